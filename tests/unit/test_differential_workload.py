"""The differential workload's generator holds every situation it promises, seed after seed
(pure: no broker, no database): a seed that missed one would test less than it says, and
cost a whole drive before saying so."""

from __future__ import annotations

from passnum.core.settings import Settings
from tests.support.differential_workload import coverage_gaps, draw_workload

CODE_KEY = Settings().voucher_code_key.encode()


def test_every_seed_holds_every_required_situation_at_the_suites_length() -> None:
    gaps = {seed: coverage_gaps(draw_workload(seed, CODE_KEY, 6)) for seed in range(200)}
    assert {seed: missing for seed, missing in gaps.items() if missing} == {}
