"""Every finding code the auditor can emit has a French and an English explanation.

The codes are read from the auditor's source (services/auditor/*.py), not listed by hand:
the first argument of every `Finding(...)`, `ChainFinding(...)` and `books.finding(...)`
call. Where that argument is not a literal it must be a parameter passed through (the
`finding` method itself), a `.code` copied from another finding, or a name assigned from a
call whose function returns the codes as literals (`VenueRules.refusal`); anything else
fails the test, so that a new way of emitting a code cannot slip past it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from services.auditor.findings_fr import ENGLISH, FRENCH, explain

AUDITOR = Path(__file__).resolve().parents[2] / "services" / "auditor"
CONSTRUCTORS = {"Finding", "ChainFinding", "finding"}


def _called_name(function: ast.expr) -> str | None:
    if isinstance(function, ast.Name):
        return function.id
    return function.attr if isinstance(function, ast.Attribute) else None


def _returned_literals(trees: list[ast.Module]) -> dict[str, set[str]]:
    """Function name -> the string literals its return statements can give."""
    returned: dict[str, set[str]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                literals = returned.setdefault(node.name, set())
                for statement in ast.walk(node):
                    if isinstance(statement, ast.Return) and statement.value is not None:
                        literals |= {leaf.value for leaf in ast.walk(statement.value)
                                     if isinstance(leaf, ast.Constant)
                                     and isinstance(leaf.value, str)}
    return returned


def _codes_in(function: ast.FunctionDef, returned: dict[str, set[str]],
              unresolved: list[str], where: str) -> set[str]:
    parameters = {argument.arg for argument in function.args.args}
    assigned = {node.targets[0].id: _called_name(node.value.func)
                for node in ast.walk(function)
                if isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Call)}
    codes: set[str] = set()
    for node in ast.walk(function):
        if not (isinstance(node, ast.Call) and _called_name(node.func) in CONSTRUCTORS
                and node.args):
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            codes.add(first.value)
        elif isinstance(first, ast.Name) and assigned.get(first.id) in returned:
            codes |= returned[assigned[first.id]]  # type: ignore[index]
        elif not ((isinstance(first, ast.Name) and first.id in parameters)
                  or (isinstance(first, ast.Attribute) and first.attr == "code")):
            unresolved.append(f"{where}:{node.lineno}")
    return codes


def emitted_codes() -> tuple[set[str], list[str]]:
    sources = sorted(AUDITOR.glob("*.py"))
    trees = [ast.parse(path.read_text(encoding="utf-8")) for path in sources]
    returned = _returned_literals(trees)
    codes: set[str] = set()
    unresolved: list[str] = []
    for path, tree in zip(sources, trees):
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                codes |= _codes_in(node, returned, unresolved, path.name)
    return codes, unresolved


def test_the_source_scan_finds_the_codes_of_every_kind_of_check() -> None:
    codes, unresolved = emitted_codes()
    assert unresolved == [], f"finding codes the scan cannot read: {unresolved}"
    # One code per way of emitting one: literal, books.finding, ChainFinding, via refusal().
    assert {"books_do_not_balance", "voucher_redeemed_twice", "altered_event",
            "redemption_by_unaccredited_venue", "redemption_outside_perimeter",
            "live_state_disagrees", "checkpoint_mismatch"} <= codes
    assert len(codes) >= 35


def test_every_emitted_code_is_explained_in_french_and_english() -> None:
    codes, _ = emitted_codes()
    assert sorted(codes - set(FRENCH)) == []
    assert sorted(codes - set(ENGLISH)) == []
    for code in codes:
        assert FRENCH[code].title and FRENCH[code].text and ENGLISH[code].text


def test_both_languages_explain_the_same_codes() -> None:
    assert set(ENGLISH) == set(FRENCH)


def test_an_unknown_code_is_shown_as_itself_never_hidden() -> None:
    assert "brand_new_code" in explain("brand_new_code", "fr").title
    assert explain("altered_event", "fr").title == "Événement modifié"
