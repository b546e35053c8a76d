"""A replay with a progress bar (rich): records read of the total, records per second."""

from __future__ import annotations

import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from passnum.core.log import fetch_high_water_marks
from passnum.core.settings import Settings
from services.auditor.replay import Replayer, ReplayOptions
from services.auditor.report import AuditReport


class RateColumn(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[no-untyped-def]
        from rich.text import Text

        rate = task.speed or 0.0
        return Text(f"{rate:,.0f} events/s")


def replay_with_progress(settings: Settings, options: ReplayOptions, show: bool
                         ) -> tuple[Replayer, AuditReport, float]:
    replayer = Replayer(settings, options)
    started = time.perf_counter()
    if not show:
        replayer.read()
        return replayer, replayer.judge(), time.perf_counter() - started
    total = sum(fetch_high_water_marks(settings, replayer.topics_in_order()).values())
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), RateColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("replay", total=total)
        replayer.read(lambda count: bar.advance(task, count))
        bar.update(task, description="judging")
        report = replayer.judge()
    return replayer, report, time.perf_counter() - started
