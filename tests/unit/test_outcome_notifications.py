"""Which outcome notifications send the HTTP gateway to the database: the ones that may
bring an outcome its waiting requests do not have (passnum.core.processing
.outcomes_notification, passnum.edge.http.CommandGateway._worth_a_lookup)."""

from __future__ import annotations

from passnum.core import processing
from passnum.core.processing import outcomes_notification, process_tag
from passnum.core.settings import Settings
from passnum.edge.http import CommandGateway


def gateway(fed_by_runner: bool) -> CommandGateway:
    gateway = CommandGateway(Settings(), "redeemer")
    gateway.fed_by_runner = fed_by_runner
    return gateway


def test_a_gateway_fed_by_its_runner_skips_only_what_its_own_process_decided(
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fed = gateway(fed_by_runner=True)
    mine = outcomes_notification("redeemer", replayed=False)
    assert not fed._worth_a_lookup(mine)
    # replayed outcomes are not handed over: looked up
    assert fed._worth_a_lookup(outcomes_notification("redeemer", replayed=True))
    # another process with the same process id (process 1 of another container)
    monkeypatch.setattr(processing, "_PROCESS_TAGS", {})
    theirs = outcomes_notification("redeemer", replayed=False)
    monkeypatch.undo()
    assert theirs != mine and fed._worth_a_lookup(theirs)
    # another processor's outcomes are never this gateway's
    assert not fed._worth_a_lookup(outcomes_notification("issuer", replayed=True))


def test_a_gateway_not_fed_by_a_runner_looks_up_every_outcome_of_its_processor() -> None:
    alone = gateway(fed_by_runner=False)
    assert alone._worth_a_lookup(outcomes_notification("redeemer", replayed=False))
    assert alone._worth_a_lookup(outcomes_notification("redeemer", replayed=True))


def test_the_process_tag_is_stable_within_a_process() -> None:
    assert process_tag() == process_tag()
    assert " " not in process_tag()
