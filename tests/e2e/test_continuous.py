"""`lakehouse run --continuous` while the shop writes: once the source stops, gold equals the oracle."""

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.stack.capture import wait_until_captured
from pipelines.workload.writer import run_workload
from tests.e2e.test_walking_skeleton import (
    _assert_gold_equals_the_oracle,
    _assert_silver_current_state_equals_the_source,
)

pytestmark = pytest.mark.stack
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")


class Cycles:
    """The `cycle N started <time>: ok|FAILED ...` lines of a continuous run, read as they come."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip())
                self._changed.notify_all()

    def started_after(self, instant: datetime) -> list[str]:
        cycles = [line for line in self.lines if line.startswith("cycle ")]
        return [c for c in cycles if datetime.fromisoformat(c.split(" started ")[1].split(": ")[0]) > instant]

    def wait_for_one_started_after(self, instant: datetime, timeout: float) -> str:
        with self._changed:
            if not self._changed.wait_for(lambda: self.started_after(instant), timeout=timeout):
                raise AssertionError(f"no cycle started after {instant} completed in {timeout} s:\n" + "\n".join(self.lines))
            return self.started_after(instant)[0]


def test_continuous_mode_converges_to_the_oracle_once_the_workload_stops(stack):
    process = subprocess.Popen([LAKEHOUSE, "run", "--continuous", "--interval", "5"], env=os.environ.copy(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        cycles = Cycles(process)
        # the shop writes while cycles run: each cycle takes in part of it
        run_workload(stack, seed=110, customers=20, days=2, start=datetime(2026, 11, 10, tzinfo=UTC))
        wait_until_captured(stack)
        captured = datetime.now(UTC)
        last = cycles.wait_for_one_started_after(captured, timeout=600)
        assert ": ok in " in last, last
        assert len([c for c in cycles.lines if c.startswith("cycle ")]) >= 2
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=600) == 0, "\n".join(cycles.lines)
    _assert_silver_current_state_equals_the_source(stack)
    _assert_gold_equals_the_oracle(stack)
