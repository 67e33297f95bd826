"""What every benchmark here does the same way: time a child process and its peak RSS, describe the
machine, write the result JSON."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


def peak_rss_bytes() -> int:
    """Peak RSS of this process so far, plus that of its live child processes (worker pools): together
    they are what the machine must hold."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return own + sum(_peak_rss_of(pid) for pid in _children())


def _children() -> list[int]:
    pids = []
    for task in Path("/proc/self/task").glob("*"):
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            pass  # not Linux, or the thread is gone
    return pids


def _peak_rss_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass  # exited meanwhile
    return 0


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    peak_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str


def run_child(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | str | None = None) -> ChildRun:
    """Run `cmd` to completion: wall time, and the peak RSS of that process alone (wait4's rusage, so
    neither this process nor earlier children count)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(seconds, usage.ru_maxrss * 1024, proc.returncode,
                        out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def machine() -> dict:
    return {"cores": os.cpu_count()}


def utc_timestamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_result(output: str, result: dict) -> None:
    """Write the result JSON to `output`; '-' writes nothing."""
    if output == "-":
        return
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def stages_from(parser: argparse.ArgumentParser, text: str, allowed: set[str], require_all: bool = False) -> list[str]:
    """The --stages option: a comma-separated run order of the allowed stage names (each of them at
    least once with require_all)."""
    stages = [s.strip() for s in text.split(",") if s.strip()]
    if not stages or not set(stages) <= allowed or (require_all and set(stages) != allowed):
        each = " (each at least once)" if require_all else ""
        parser.error(f"--stages: a comma-separated list of {' and '.join(sorted(allowed))}{each}")
    return stages


def rate_summary(runs: dict[str, list[dict]]) -> dict:
    """Best events/s of the baseline and of ours, and their ratio (ours / baseline), of the runs made."""
    summary = {}
    for stage in ("baseline", "ours"):
        if runs[stage]:
            summary[f"{stage}_events_per_s"] = round(max(r["events_per_s"] for r in runs[stage]))
    if runs["baseline"] and runs["ours"]:
        summary["ratio"] = round(summary["ours_events_per_s"] / summary["baseline_events_per_s"], 4)
    return summary
