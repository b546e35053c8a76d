"""An answer that depends on time is not frozen: the redeemer's handler marks a check and a
refusal that time lifts as not final (not recorded as the request's outcome), and names
their events by the request and the decision's instant, so that the same request decided
again never repeats an event id (which the auditor would call `request_decided_twice`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from passnum.ledger.identity import event_id_for
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.ledger import settlement_month as settlement
from schemas.messages import CheckVoucher, CloseSettlementMonth, VoucherChecked
from services.redeemer.handler import RedeemerHandler

from . import MORNING, SIRET

HANDLER = RedeemerHandler(topology_for(Settings()), b"unit-test-voucher-code-key-0001")


def test_a_check_is_not_final_and_each_answer_has_its_own_event_id() -> None:
    command = CheckVoucher(request_id="check-1", occurred_at=MORNING, code="ABC", siret=SIRET)
    answer = VoucherChecked(event_id=event_id_for("redeemer", "check-1", 0),
                            request_id="check-1", occurred_at=MORNING, siret=SIRET,
                            voucher_id=None, valid=False, reason="malformed_code")
    first = HANDLER._decision(command, [answer], MORNING, final=False)
    again = HANDLER._decision(command, [answer], MORNING + timedelta(seconds=1), final=False)
    assert not first.final and not again.final
    ids = {first.events[0][2].event_id, again.events[0][2].event_id, answer.event_id}
    assert len(ids) == 3
    kept = HANDLER._decision(command, [answer], MORNING, final=True)
    assert kept.final and kept.events[0][2].event_id == answer.event_id


def test_a_month_not_ended_is_a_refusal_time_lifts_and_the_others_are_not() -> None:
    now = datetime(2026, 12, 7, 10, tzinfo=timezone.utc)
    close = CloseSettlementMonth(request_id="close-2026-12", occurred_at=now, month="2026-12")
    book = settlement.SettlementBook()
    refused = settlement.decide_close_month(book, close, [])
    assert refused[0].reason == "month_not_ended"  # type: ignore[attr-defined]
    assert "month_not_ended" in settlement.REFUSALS_TIME_LIFTS
    assert "month_already_closed" not in settlement.REFUSALS_TIME_LIFTS
