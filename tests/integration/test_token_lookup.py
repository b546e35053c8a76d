"""Concurrent requests with a token the cache does not hold share one database lookup
(passnum.edge.http.authenticate): when an entry expires under load, every request queued
with that token used to query PostgreSQL for it."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import psycopg
from psycopg_pool import AsyncConnectionPool

from passnum.core.settings import Settings
from passnum.edge.http import Tenant, TokenCache, authenticate, issue_token

CONCURRENT_REQUESTS = 50


class CountingSource:
    """A real pool's connections, counting how many times one was taken."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.taken = 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        self.taken += 1
        async with self.pool.connection() as connection:
            yield connection


async def _authenticate_together(url: str, header: str, cache: TokenCache
                                 ) -> tuple[list[Tenant | None], int]:
    async with AsyncConnectionPool(url, min_size=1, max_size=4, open=False) as pool:
        await pool.wait()
        source = CountingSource(pool)
        tenants = await asyncio.gather(*(authenticate(source.connection(), header, cache)
                                         for _ in range(CONCURRENT_REQUESTS)))
        return list(tenants), source.taken


def test_concurrent_misses_share_one_lookup(ledger: Settings) -> None:
    with psycopg.connect(ledger.database_url) as connection:
        token = issue_token(connection, "venue", "73282932000074")
    cache = TokenCache(seconds=60)
    tenants, taken = asyncio.run(_authenticate_together(
        ledger.database_url, f"Bearer {token}", cache))
    assert tenants == [Tenant("venue", "73282932000074")] * CONCURRENT_REQUESTS
    assert taken == 1
    # Then answered from the cache: no lookup at all.
    tenants, taken = asyncio.run(_authenticate_together(
        ledger.database_url, f"Bearer {token}", cache))
    assert taken == 0 and tenants[0] == Tenant("venue", "73282932000074")


def test_an_unknown_token_is_refused_and_not_cached(ledger: Settings) -> None:
    cache = TokenCache(seconds=60)
    for _ in range(2):
        tenants, taken = asyncio.run(_authenticate_together(
            ledger.database_url, "Bearer pn_ven_unknown", cache))
        assert tenants == [None] * CONCURRENT_REQUESTS
        assert taken == 1  # shared while in flight, asked again afterwards
