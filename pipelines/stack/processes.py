"""Small process helpers for the local stack: free ports, spawning with a log file, waiting, stopping by pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class StackError(Exception):
    """The local stack cannot be installed, started or stopped; the message says which component and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:`port` (connections of a stopped server in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def require_binary(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` not found on PATH: install it ({install_hint})")
    return path


def _restore_signals() -> None:
    # A shell that runs us in the background makes children ignore SIGINT/SIGTERM; undo that so that
    # `down` can stop them politely.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


_children: dict[int, subprocess.Popen] = {}


def spawn(cmd: Sequence[str], log_file: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start `cmd` in its own session with stdout+stderr appended to `log_file`; return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_restore_signals,
            close_fds=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def run(cmd: Sequence[str], what: str, timeout: float = 600, cwd: Path | None = None) -> str:
    """Run a short command to completion; StackError with its output on failure."""
    try:
        result = subprocess.run(
            list(cmd), cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            preexec_fn=_restore_signals,
        )
    except FileNotFoundError as exc:
        raise StackError(f"{what}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what}: timed out after {timeout:.0f} s") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise StackError(f"{what} failed (exit {result.returncode}):\n" + "\n".join(output))
    return result.stdout


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        del _children[pid]


def pid_alive(pid: int | None) -> bool:
    """True if `pid` runs (a zombie counts as gone)."""
    if not pid:
        return False
    _reap(pid)
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def pid_owned(pid: int | None, root: Path) -> bool:
    """True if `pid` runs with its working directory under `root` (guards against a recycled pid)."""
    if not pid_alive(pid):
        return False
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return cwd == root.resolve() or root.resolve() in cwd.parents


def wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


def stop_pid(pid: int, timeout: float = 20) -> None:
    """SIGTERM the process (and its process group), then SIGKILL after `timeout` seconds."""
    if not pid_alive(pid):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_pid_gone(pid, timeout if sig == signal.SIGTERM else 10):
            return
    if pid_alive(pid):
        raise StackError(f"process {pid} survives SIGKILL")


def kill_pid(pid: int, timeout: float = 10) -> None:
    """SIGKILL the process (and its process group) at once, as a crash would end it; wait until gone."""
    if not pid_alive(pid):
        return
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if not wait_pid_gone(pid, timeout):
        raise StackError(f"process {pid} survives SIGKILL")


def tail(log_file: Path, lines: int = 25) -> str:
    try:
        text = log_file.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {log_file})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool],
    component: str,
    timeout: float,
    log_file: Path,
    pid: int | None = None,
    interval: float = 0.5,
) -> None:
    """Poll `check` until it is true; StackError naming the component with its log tail otherwise."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            if check():
                return
        except StackError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failed probe just means "not yet"
            last_error = f"{type(exc).__name__}: {exc}"
        if pid is not None and not pid_alive(pid):
            raise StackError(f"{component} exited during start-up; last lines of {log_file}:\n{tail(log_file)}")
        if time.monotonic() > deadline:
            why = f" (last probe: {last_error})" if last_error else ""
            raise StackError(
                f"{component} not healthy after {timeout:.0f} s{why}; last lines of {log_file}:\n{tail(log_file)}"
            )
        time.sleep(interval)
