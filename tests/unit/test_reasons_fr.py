"""Every reason code the redeemer can record has a plain French and English explanation
(passnum/edge/reasons_fr.py).

The codes are read from the redeemer's source rather than copied here, so that a code
added to a decider without an explanation fails this test: the `*_PRECEDENCE` tuples, every
`reason = "..."` and `reason="..."`, what the `*_refusal` functions return, and the outcomes
a voucher code parses to."""

from __future__ import annotations

import ast
import inspect
import typing
from types import ModuleType

from passnum.edge import reasons_fr
from passnum.ledger import settlement_month as settlement
from passnum.ledger import venue, voucher
from services.redeemer import domain
from passnum.ledger import voucher_codes
from services.redeemer import api


def _strings(node: ast.AST | None) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List)):
        return {text for element in node.elts for text in _strings(element)}
    return set()


def _refusal_returns(function: ast.FunctionDef) -> set[str]:
    """What a `*_refusal` function returns: a code, or (voucher id, code)."""
    return {text for node in ast.walk(function) if isinstance(node, ast.Return)
            for text in _strings(node.value)}


def reason_codes_in(module: ModuleType) -> set[str]:
    tree = ast.parse(inspect.getsource(module))
    codes: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            names = {target.id for target in node.targets if isinstance(target, ast.Name)}
            if "reason" in names or any(name.endswith("_PRECEDENCE") for name in names):
                codes |= _strings(node.value)
        elif isinstance(node, ast.keyword) and node.arg == "reason":
            codes |= _strings(node.value)
        elif isinstance(node, ast.FunctionDef) and node.name.endswith("_refusal"):
            codes |= _refusal_returns(node)
    return codes


def code_outcomes() -> set[str]:
    outcome = typing.get_type_hints(voucher_codes.ParsedCode)["outcome"]
    return set(typing.get_args(outcome)) - {"valid"}


def redeemer_reason_codes() -> set[str]:
    return (reason_codes_in(voucher) | reason_codes_in(venue) | reason_codes_in(domain)
            | reason_codes_in(settlement) | code_outcomes()
            | set(api.REJECTION_STATUS))


def test_the_introspection_finds_the_codes_it_must() -> None:
    codes = redeemer_reason_codes()
    # Known members of each source: if the reading of the source broke, this says so.
    assert set(voucher.REDEMPTION_PRECEDENCE) <= codes
    assert set(settlement.CLOSE_PRECEDENCE) <= codes
    assert {"cancellation_too_late", "invalid_iban", "provider_revoked", "not_supported",
            "mistyped_code"} <= codes


def test_every_code_the_redeemer_can_record_is_explained() -> None:
    missing = sorted(redeemer_reason_codes() - set(reasons_fr.REASONS))
    assert not missing, f"add these to passnum/edge/reasons_fr.py: {missing}"


def test_each_explanation_is_a_french_and_an_english_sentence() -> None:
    for code, (french, english) in reasons_fr.REASONS.items():
        assert french and english and french != english, code
        assert french.rstrip().endswith(".") and english.rstrip().endswith("."), code
        assert reasons_fr.explain(code) == french
        assert reasons_fr.explain(code, "en") == english


def test_an_unknown_code_is_still_answered_with_the_code() -> None:
    assert "made_up_reason" in reasons_fr.explain("made_up_reason")
    assert reasons_fr.explain("made_up_reason").startswith("Le registre a refusé")
    assert reasons_fr.explain("made_up_reason", "en").startswith("The ledger refused")
