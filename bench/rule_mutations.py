"""Which test catches which rule: break one rule at a time in a copy of the work tree and
see which tests fail.

    .venv/bin/python bench/rule_mutations.py                 # every mutation
    .venv/bin/python bench/rule_mutations.py --only c_fold_validity --keep

1. Copies the last commit (`git archive HEAD`; `--work-tree`: the files as they are now,
   tracked and untracked, uncommitted changes included, not `.git`, the virtualenv or
   ignored files) to a temporary directory, builds the auditor's compiled fold there
   (`setup.py build_ext --inplace`), and checks that Python imports the copy's modules,
   not the work tree's.
2. Runs every test file named below on the unchanged copy: all must pass (the baseline).
   Hypothesis runs without its shrinking phase (a failure is all that is asked here, and
   shrinking a failure of a big property takes minutes).
3. For each mutation, a one-line change to one rule (the line must be found exactly once,
   else the mutation is reported as not applicable), rebuilt if it is C, the mutation's
   test files run, the failed tests recorded, the line put back.
4. Prints the table: rule, mutation, the tests that failed. A mutation no test catches is
   a missing test: the exit status is 1.

The work tree itself is never written to. Integration tests use the real PostgreSQL and
broker as the suite does (PASSNUM_* settings from the environment).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ACCELERATIONS = "tests/unit/test_ledger_accelerations.py"
REDEEMER_DOMAIN = "tests/unit/test_redeemer_domain.py"
ISSUER_DOMAIN = "tests/unit/test_issuer_domain.py"
INVARIANTS = "tests/unit/test_invariants_stateful.py"
FAST_PATH = "tests/unit/test_auditor_fast_path.py"
COMPILED_FOLD = "tests/unit/test_auditor_compiled_fold.py"
PROJECTION = "tests/integration/test_booklet_facts_projection.py"
RACES = "tests/integration/test_redeemer_restriction_races.py"
VENUE_RACES = "tests/unit/test_venue_races.py"
LEDGER_TESTS = (ACCELERATIONS, REDEEMER_DOMAIN, ISSUER_DOMAIN)
AUDITOR_TESTS = (ACCELERATIONS, FAST_PATH, COMPILED_FOLD)


@dataclass(frozen=True)
class Mutation:
    name: str
    rule: str
    path: str
    line: str  # the line as it is (stripped of its indentation when matched)
    mutated: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation("ledger_outside_validity", "ledger: a scan outside the validity is refused",
             "passnum/ledger/voucher.py",
             "if not within_validity(venue_day(scanned_at), booklet.valid_from, "
             "booklet.grace_until):",
             "if False and not within_validity(venue_day(scanned_at), booklet.valid_from, "
             "booklet.grace_until):", LEDGER_TESTS),
    Mutation("ledger_booklet_blocked", "ledger: a blocked booklet's voucher is refused",
             "passnum/ledger/voucher.py", "if booklet.blocked:", "if False:", LEDGER_TESTS),
    Mutation("ledger_not_activated_at_scan_time",
             "ledger: a scan dated before the activation is refused",
             "passnum/ledger/voucher.py",
             "if booklet.activated_at is not None and scanned_at < booklet.activated_at:",
             "if False:", LEDGER_TESTS),
    Mutation("ledger_venue_not_accredited_at_scan_time",
             "ledger: a scan dated before the venue's accreditation is refused",
             "passnum/ledger/venue.py",
             "if provider.accredited_since is not None and scanned_at < "
             "provider.accredited_since:", "if False:", LEDGER_TESTS),
    Mutation("ledger_in_perimeter", "ledger: a department in the perimeter covers its communes",
             "passnum/ledger/booklet.py",
             "return address_code in perimeter or department in perimeter",
             "return address_code in perimeter", LEDGER_TESTS),
    Mutation("ledger_funding", "ledger: booklets are activated only as far as funds cover",
             "passnum/ledger/envelope.py", "if value > available:", "if False:",
             (ISSUER_DOMAIN, INVARIANTS)),
    Mutation("c_fold_validity", "compiled fold: only a redemption within its validity is plain",
             "services/auditor/_plain_records.c",
             "|| day < call->valid_from_day || day > call->grace_until_day)", "|| 0)",
             AUDITOR_TESTS),
    Mutation("columns_outside_validity", "columns: a redemption outside its validity is named",
             "services/auditor/books.py",
             "if not framing.valid_from_day <= day <= framing.grace_until_day:", "if False:",
             AUDITOR_TESTS),
    Mutation("columns_blocked", "columns: a redemption after the block's application is "
             "named", "services/auditor/books.py", "if booklet in self.applied_blocks:",
             "if False:", AUDITOR_TESTS),
    Mutation("ledger_block_applied", "ledger: a reported block is applied before the "
             "booklet's next redemption", "passnum/ledger/voucher.py",
             "if booklet is None or not booklet.blocked or booklet.block_applied:",
             "if True:", (REDEEMER_DOMAIN, RACES)),
    Mutation("ledger_suspension_after_scans", "ledger: a suspension takes effect no earlier "
             "than the scans the venue had accepted", "passnum/ledger/venue.py",
             "if command.status in RESTRICTING_STATUSES and latest_scan_at is not None:",
             "if False:", (REDEEMER_DOMAIN, RACES, VENUE_RACES)),
    Mutation("columns_venue_decision_order", "end judgement: a venue's changes are taken in "
             "the order they were decided", "services/auditor/invariants.py",
             "for key, _, _, event in sorted(venue.events, key=lambda item: item[1:3]):",
             "for key, _, _, event in sorted(venue.events, key=lambda item: item[:3]):",
             (ACCELERATIONS, VENUE_RACES)),
    Mutation("redeemer_venue_lock", "redeemer: a venue's status change waits for the scan "
             "batches in flight", "services/redeemer/store.py",
             'function = "pg_advisory_xact_lock" if exclusive else '
             '"pg_advisory_xact_lock_shared"',
             'return', (RACES,)),
    Mutation("columns_redeemed_twice", "columns: a later redemption of a standing voucher is "
             "named", "services/auditor/invariants.py", "if standing is not None:",
             "if False:", AUDITOR_TESTS),
    Mutation("columns_cancellation_day", "end judgement: a cancellation on another day than "
             "its redemption is named", "services/auditor/invariants.py",
             "if ledger_time.same_local_day(_instant(standing.key // 4),",
             "if True or ledger_time.same_local_day(_instant(standing.key // 4),",
             AUDITOR_TESTS),
    Mutation("columns_venue_status", "end judgement: a redemption at a venue not accredited at "
             "its instant is named", "services/auditor/invariants.py",
             'if timeline.status_at(key) != "accredited":', "if False:", AUDITOR_TESTS),
    Mutation("projection_earliest_activation", "redeemer's SQL projection: the earliest "
             "activation instant is kept", "services/redeemer/store.py",
             '"LEAST(b.activated_at, u.t) FROM (SELECT i, min(t) AS t FROM unnest("',
             '"GREATEST(b.activated_at, u.t) FROM (SELECT i, min(t) AS t FROM unnest("',
             (PROJECTION,)),
)


NO_SHRINKING = """\
from hypothesis import Phase, settings

settings.register_profile("mutants", database=None,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile("mutants")
"""


def copy_commit(destination: Path) -> None:
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT,
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)


def copy_work_tree(destination: Path) -> None:
    """Tracked and untracked files as they are now (deleted ones left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
        check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def build(copy: Path) -> None:
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=copy,
                   check=True, capture_output=True)


def check_imports(copy: Path) -> None:
    """The copy's modules, and its compiled fold, are the ones imported there."""
    probe = ("import passnum.ledger.voucher as v, services.auditor.books as b, "
             "services.auditor._plain_records as c; print(v.__file__, b.__file__, c.__file__)")
    printed = subprocess.run([sys.executable, "-c", probe], cwd=copy, check=True,
                             capture_output=True, text=True).stdout.split()
    outside = [path for path in printed if not Path(path).resolve().is_relative_to(copy)]
    if outside:
        raise SystemExit(f"the copy imports modules from elsewhere: {outside}")


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[list[str], float, str]:
    """(failed test ids, seconds, the summary line)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
         "mutation_profile", "-rfE", "--no-header", *tests], cwd=copy, capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    seconds = time.monotonic() - started
    failed = sorted({match.group(1) for match in re.finditer(
        r"^(?:FAILED|ERROR) (\S+?)(?: - .*)?$", result.stdout, re.MULTILINE)})
    summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
    if result.returncode not in (0, 1):
        failed = failed or [f"(pytest exit status {result.returncode}: {summary})"]
    return failed, seconds, summary


def mutate(copy: Path, mutation: Mutation) -> str | None:
    """Apply the one-line change; the original text, or None if the line is not there once."""
    path = copy / mutation.path
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    found = [index for index, line in enumerate(lines) if line.strip() == mutation.line]
    if len(found) != 1:
        return None
    index = found[0]
    indentation = lines[index][:len(lines[index]) - len(lines[index].lstrip())]
    lines[index] = indentation + mutation.mutated + "\n"
    path.write_text("".join(lines))
    return text


def short(test_id: str) -> str:
    """tests/unit/test_x.py::test_y[param] -> test_x.py::test_y[param]"""
    return test_id.rsplit("/", 1)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[],
                        help="the named mutation(s) only")
    parser.add_argument("--keep", action="store_true", help="keep the copy")
    parser.add_argument("--work-tree", action="store_true",
                        help="copy the work tree as it is, not the last commit")
    options = parser.parse_args()
    mutations = [m for m in MUTATIONS if not options.only or m.name in options.only]
    copy = Path(tempfile.mkdtemp(prefix="passnum-mutant-")).resolve()
    rows = []
    try:
        (copy_work_tree if options.work_tree else copy_commit)(copy)
        (copy / "mutation_profile.py").write_text(NO_SHRINKING)
        build(copy)
        check_imports(copy)
        load = os.getloadavg()
        print(f"copy {copy}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}",
              flush=True)
        files = tuple(sorted({test for m in mutations for test in m.tests}))
        failed, seconds, summary = run_tests(copy, files)
        print(f"baseline ({len(files)} files, {seconds:.0f} s): {summary}", flush=True)
        if failed:
            print("the unchanged copy fails:", *failed, sep="\n  ")
            return 2
        for mutation in mutations:
            original = mutate(copy, mutation)
            if original is None:
                rows.append((mutation, None, 0.0))
                print(f"{mutation.name}: line not found once in {mutation.path}", flush=True)
                continue
            try:
                if mutation.path.endswith(".c"):
                    build(copy)
                failed, seconds, summary = run_tests(copy, mutation.tests)
            finally:
                (copy / mutation.path).write_text(original)
                if mutation.path.endswith(".c"):
                    build(copy)
            rows.append((mutation, failed, seconds))
            print(f"{mutation.name} ({seconds:.0f} s): {summary}", flush=True)
    finally:
        if options.keep:
            print(f"kept {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)
    print()
    print("| rule | mutation | tests run | tests that caught it |")
    print("|---|---|---|---|")
    for mutation, failed, _ in rows:
        where = f"`{mutation.path}`: `{mutation.line}` -> `{mutation.mutated}`"
        run = ", ".join(f"`{short(test)}`" for test in mutation.tests)
        caught = ("line not found" if failed is None else
                  "**none**" if not failed else "<br>".join(f"`{short(t)}`" for t in failed))
        print(f"| {mutation.rule} | {where} | {run} | {caught} |")
    missed = [m.name for m, failed, _ in rows if not failed]
    if missed:
        print("\nnot caught (or not applicable):", ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
