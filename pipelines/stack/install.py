"""Jars for the JVM components, gathered by Maven from the checked-in poms into `<PROJECT_DIR>/data/jars`."""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
from pathlib import Path

from pipelines.stack.processes import StackError, require_binary, run

POM_DIR = Path(__file__).resolve().parent / "maven"
POMS = {"broker": POM_DIR / "broker" / "pom.xml", "connect": POM_DIR / "connect" / "pom.xml"}
MARKER = ".pom-sha256"


def require_java() -> None:
    require_binary("java", "apt-get install default-jre; Java 17 or newer")


def _pom_hash(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def installed(jars_root: Path, name: str) -> bool:
    marker = jars_root / name / MARKER
    return marker.exists() and marker.read_text().strip() == _pom_hash(POMS[name])


def check_jars(folder: Path) -> None:
    """One slf4j-api 2.x (1.7 would not see the log4j provider) and one Jackson version."""
    names = [p.name for p in folder.glob("*.jar")]
    slf4j = [n for n in names if n.startswith("slf4j-api-")]
    if len(slf4j) != 1 or not slf4j[0].startswith("slf4j-api-2."):
        raise StackError(f"{folder}: expected one slf4j-api 2.x jar, found {slf4j}")
    jackson = {m.group(1) for n in names if (m := re.match(r"jackson-[a-z0-9-]+?-(\d+\.\d+)(\.\d+)?\.jar$", n))}
    if len(jackson) > 1:
        raise StackError(f"{folder}: mixed Jackson versions {sorted(jackson)}; align them in the pom")


def install(jars_root: Path, force: bool = False) -> list[str]:
    """Run Maven for each pom whose jars are missing or stale; return the names installed."""
    done: list[str] = []
    jars_root.mkdir(parents=True, exist_ok=True)
    with open(jars_root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name, pom in POMS.items():
            if not force and installed(jars_root, name):
                continue
            require_binary("mvn", "apt-get install maven")
            require_java()
            target = jars_root / name
            staging = jars_root / f".{name}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            run(["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                 f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
                f"install: mvn for {pom}", timeout=1200)
            check_jars(staging)
            (staging / MARKER).write_text(_pom_hash(pom) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
            done.append(name)
    return done
