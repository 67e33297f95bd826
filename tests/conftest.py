"""Shared pytest fixtures.

`stack`: the local stack (Postgres, Kafka, Connect + Debezium, S3) started once per test session in a
temporary data dir; yields the Settings that point at it and always stops it (and deletes its data) at the
end. Tests that use it are marked `@pytest.mark.stack`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def stack_schema_file() -> Path:
    """The OLTP schema the stack applies; LAKEHOUSE_TEST_SCHEMA_FILE overrides it (for testing the stack alone)."""
    from pipelines.stack import SCHEMA_FILE

    return Path(os.environ.get("LAKEHOUSE_TEST_SCHEMA_FILE", SCHEMA_FILE))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    from pipelines.settings import load_settings
    from pipelines.stack import Stack

    data_dir = tmp_path_factory.mktemp("lakehouse-data")
    previous = os.environ.get("LAKEHOUSE_DATA_DIR")
    os.environ["LAKEHOUSE_DATA_DIR"] = str(data_dir)
    local_stack = Stack(load_settings(), schema_file=stack_schema_file())
    try:
        local_stack.up()
        yield load_settings()
    finally:
        try:
            local_stack.down(purge=True)
        finally:
            if previous is None:
                os.environ.pop("LAKEHOUSE_DATA_DIR", None)
            else:
                os.environ["LAKEHOUSE_DATA_DIR"] = previous
