"""The stack's state file (`<data_dir>/stack/state.json`, read by pipelines.settings) and remembered ports.

state.json exists only while the stack runs; its shape is fixed:
{"postgres": {"port", "database", "pid"}, "kafka": {"port", "controller_port", "pid"},
 "connect": {"rest_port", "connector", "pid"}, "s3": {"port", "bucket", "pid"}}
ports.json survives `down` so that a restart reuses the same ports when they are still free.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.stack.processes import StackError, free_port, port_is_free


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StackError(f"{path}: not valid JSON ({exc}); delete it after stopping the stack") from exc


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class StateFile:
    def __init__(self, stack_dir: Path):
        self.stack_dir = stack_dir
        self.path = stack_dir / "state.json"
        self.ports_path = stack_dir / "ports.json"

    def read(self) -> dict:
        return _read_json(self.path)

    def set(self, component: str, values: dict) -> None:
        state = self.read()
        state[component] = values
        _write_json(self.path, state)

    def drop(self, component: str) -> None:
        state = self.read()
        if component in state:
            del state[component]
            _write_json(self.path, state)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def port(self, name: str) -> int:
        """The port remembered under `name` if it is still free, else a new free one (remembered)."""
        ports = _read_json(self.ports_path)
        port = ports.get(name)
        if not (isinstance(port, int) and port_is_free(port)):
            taken = set(ports.values())
            port = free_port()
            while port in taken:
                port = free_port()
            ports[name] = port
            _write_json(self.ports_path, ports)
        return port

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise up/down/purge of one data dir between processes."""
        self.stack_dir.mkdir(parents=True, exist_ok=True)
        with open(self.stack_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
