"""Dagster resources: the one place assets get their configuration from."""

from __future__ import annotations

import dagster as dg

from pipelines.settings import Settings, load_settings


class LakehouseSettings(dg.ConfigurableResource):
    """Pipeline settings (see pipelines/settings.py). `data_dir` overrides LAKEHOUSE_DATA_DIR, which
    lets a test or a second deployment point at another lake without touching the environment."""

    data_dir: str | None = None

    def load(self) -> Settings:
        import os

        env = dict(os.environ)
        if self.data_dir:
            env["LAKEHOUSE_DATA_DIR"] = self.data_dir
        return load_settings(env)
