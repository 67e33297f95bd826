"""Named crash points for fault-injection tests of the exactly-once paths.

`LAKEHOUSE_FAILPOINTS="cdc.before_write:3"` makes the process SIGKILL itself the 3rd time it reaches
`failpoint("cdc.before_write")` (the count defaults to 1). Unset in production: one dict lookup.
SIGKILL, not an exception: nothing may run after it (no finally, no flush), as in a real crash.
"""

from __future__ import annotations

import os
import signal

_ARMED: dict[str, int] = {}
for _spec in filter(None, os.environ.get("LAKEHOUSE_FAILPOINTS", "").split(",")):
    _name, _, _count = _spec.partition(":")
    _ARMED[_name.strip()] = int(_count or 1)


def failpoint(name: str) -> None:
    if name not in _ARMED:
        return
    _ARMED[name] -= 1
    if _ARMED[name] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
