"""`lakehouse run --continuous`: micro-batches, so that gold follows the source within minutes.

Each cycle is one run of the job the schedules run (`lakehouse_all_assets`, recorded in the Dagster
instance like any other): every CDC topic up to its current end, the event days whose S3 listing changed
since the last cycle (the events sensor's rule, `plan_runs`), and the incremental dbt build with all
checks over those days. A cycle starts `interval` seconds after the previous one started, or at once
when it took longer; what arrives meanwhile waits in Kafka and S3, so nothing is lost between cycles.
Every cycle writes a few small files per table: once an hour, between two cycles (when nothing else
writes), the loop compacts and vacuums the lake as `lake_maintenance` does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime


@dataclass(frozen=True)
class Cycle:
    number: int
    started_at: datetime
    seconds: float
    days: tuple[date, date]
    success: bool
    failed_checks: list[str]

    def line(self) -> str:
        checks = f", failed checks: {', '.join(self.failed_checks)}" if self.failed_checks else ""
        days = self.days[0].isoformat() + ("" if self.days[0] == self.days[1] else f"..{self.days[1].isoformat()}")
        return (f"cycle {self.number} started {self.started_at.isoformat(timespec='seconds')}: "
                f"{'ok' if self.success else 'FAILED'} in {self.seconds:.1f} s, days {days}{checks}")


UPKEEP_EVERY_S = 3600


def run_continuously(interval: float, stop: threading.Event, on_cycle: Callable[[Cycle], None],
                     cycles: int | None = None, on_upkeep: Callable[[str], None] = print) -> int:
    """Cycles until `stop` is set (the running cycle finishes first) or `cycles` ran; the number of
    cycles that failed."""
    from pipelines.events.assets import SensorCursor, plan_runs
    from pipelines.events.objects import event_store_for
    from pipelines.maintenance import maintain_lake
    from pipelines.run import materialize_all
    from pipelines.settings import load_settings

    settings = load_settings()
    store = event_store_for(settings)
    cursor, number, failed = SensorCursor(), 0, 0
    next_start = last_upkeep = time.monotonic()
    while (cycles is None or number < cycles) and not stop.wait(max(0.0, next_start - time.monotonic())):
        number += 1
        started, clock = datetime.now(UTC), time.monotonic()
        next_start = clock + interval
        requests, next_cursor, _ = plan_runs(store, cursor, now=started)
        changed = sorted(date.fromisoformat(r.partition_key) for r in requests) or [started.date()]
        result = materialize_all(log_level="WARNING", days=(changed[0], changed[-1]))
        if result.success:
            cursor = next_cursor  # a failed cycle's days are listed as changed again by the next one
        else:
            failed += 1
        on_cycle(Cycle(number, started, time.monotonic() - clock, (changed[0], changed[-1]), result.success,
                       sorted(c.check_name for c in result.check_evaluations() if not c.passed)))
        if cycles is None and time.monotonic() - last_upkeep >= UPKEEP_EVERY_S:
            tables = maintain_lake(settings)
            last_upkeep = time.monotonic()
            errors = [t for t in tables if t.error]
            on_upkeep(f"upkeep: {len(tables)} tables compacted and vacuumed"
                      + (f", {len(errors)} failed: {', '.join(t.table for t in errors)}" if errors else ""))
    return failed
