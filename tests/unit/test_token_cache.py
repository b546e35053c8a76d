"""The token cache of the HTTP edge (passnum.edge.http.TokenCache): one lookup per token in
flight, its answer cached once, and nothing cached from a lookup a revocation overtook."""

from __future__ import annotations

import asyncio

from passnum.edge.http import Tenant, TokenCache

VENUE = Tenant("venue", "73282932000074")


def test_concurrent_misses_share_one_lookup_cached_once() -> None:
    async def scenario() -> tuple[int, list[Tenant | None], Tenant | None]:
        cache, started, answer = TokenCache(60), [], asyncio.Event()

        async def lookup() -> Tenant | None:
            started.append(1)
            await answer.wait()
            return VENUE

        waiting = [asyncio.ensure_future(cache.look_up("d", lookup)) for _ in range(5)]
        await asyncio.sleep(0)
        answer.set()
        results = await asyncio.gather(*waiting)
        return len(started), results, cache.get("d", 0)

    started, results, cached = asyncio.run(scenario())
    assert started == 1 and results == [VENUE] * 5 and cached == VENUE


def test_a_lookup_overtaken_by_a_revocation_caches_nothing() -> None:
    async def scenario() -> tuple[Tenant | None, Tenant | None, bool, Tenant | None]:
        cache, answer = TokenCache(60), asyncio.Event()

        async def before_revocation() -> Tenant | None:
            await answer.wait()
            return VENUE  # read while the token was still valid

        in_flight = cache.look_up("d", before_revocation)
        await asyncio.sleep(0)
        cache.forget(VENUE)  # revoked meanwhile, in this process
        fresh = cache.look_up("d", lambda: asyncio.sleep(0, result=None))
        answer.set()
        old, new = await in_flight, await fresh
        return old, new, fresh is in_flight, cache.get("d", 0)

    old, new, same, cached = asyncio.run(scenario())
    assert old == VENUE  # the request already waiting gets what it asked before
    assert new is None and not same  # a request after the revocation looks again
    assert cached is None  # and the revoked token is not cached again
