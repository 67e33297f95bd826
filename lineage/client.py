"""Building the OpenLineage client: where our lineage events go.

Precedence, first match wins:
1. `OPENLINEAGE_DISABLED=true` → no events (OpenLineage's own switch).
2. An `openlineage.yml`: the path in `OPENLINEAGE_CONFIG`, else `<project>/openlineage.yml` if it exists
   (OpenLineage's own format: `transport: {type: http|kafka|file|console|composite, ...}`).
3. `OPENLINEAGE_URL` (+ `OPENLINEAGE_ENDPOINT`, `OPENLINEAGE_API_KEY`) → HTTP transport.
4. Default: one JSONL file, appended, at `settings.lineage_file` (data/lineage/events.jsonl).

We resolve the transport ourselves rather than calling `OpenLineageClient()` bare because the library's
own discovery also reads `./openlineage.yml` from whatever the working directory is and falls back to
printing to the console; a pipeline run must not depend on where it was started from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from openlineage.client import OpenLineageClient
from openlineage.client.transport import HttpConfig, HttpTransport, Transport
from openlineage.client.transport import get_default_factory
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.noop import NoopConfig, NoopTransport

from pipelines.settings import PROJECT_DIR, Settings, load_settings

DEFAULT_NAMESPACE = "lakehouse"


class LineageConfigError(Exception):
    """A mistake in the OpenLineage configuration; the message says which file and what."""


def lineage_namespace(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("OPENLINEAGE_NAMESPACE") or DEFAULT_NAMESPACE


def config_file(env: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if env is None else env
    if env.get("OPENLINEAGE_CONFIG"):
        path = Path(env["OPENLINEAGE_CONFIG"])
        if not path.is_file():
            raise LineageConfigError(f"{path}: OPENLINEAGE_CONFIG points to a file that does not exist")
        return path
    default = PROJECT_DIR / "openlineage.yml"
    return default if default.is_file() else None


def build_transport(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> Transport:
    env = os.environ if env is None else env
    if env.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return NoopTransport(NoopConfig())
    path = config_file(env)
    if path is not None:
        return _transport_from_file(path)
    if env.get("OPENLINEAGE_URL"):
        http: dict[str, Any] = {"url": env["OPENLINEAGE_URL"], "endpoint": env.get("OPENLINEAGE_ENDPOINT", "api/v1/lineage")}
        if env.get("OPENLINEAGE_API_KEY"):
            http["auth"] = {"type": "api_key", "apiKey": env["OPENLINEAGE_API_KEY"]}
        return HttpTransport(HttpConfig.from_dict(http))
    settings = settings or load_settings()
    settings.lineage_file.parent.mkdir(parents=True, exist_ok=True)
    return FileTransport(FileConfig(log_file_path=str(settings.lineage_file), append=True))


def _transport_from_file(path: Path) -> Transport:
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LineageConfigError(f"{path}: cannot read OpenLineage config ({exc})") from exc
    transport = content.get("transport") if isinstance(content, dict) else None
    if not isinstance(transport, dict) or not transport.get("type"):
        raise LineageConfigError(f"{path}: expected `transport:` with a `type` (http, kafka, file, console, ...)")
    if transport["type"] == "file" and transport.get("log_file_path"):
        Path(transport["log_file_path"]).parent.mkdir(parents=True, exist_ok=True)
    try:
        return get_default_factory().create(dict(transport))
    except Exception as exc:
        raise LineageConfigError(f"{path}: invalid transport config ({type(exc).__name__}: {exc})") from exc


def build_client(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> OpenLineageClient:
    return OpenLineageClient(transport=build_transport(settings, env))
