"""S3: a moto server (S3 HTTP API, in memory) with the raw-events bucket."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.stack.processes import spawn, stop_pid, wait_until


def client(port: int, access_key: str = "testing", secret_key: str = "testing", region: str = "us-east-1"):
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
    )


class S3:
    name = "s3"

    def __init__(self, stack_dir: Path):
        self.root = stack_dir / "s3"
        self.log_file = stack_dir / "logs" / "s3.log"

    def start(self, port: int) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_DEFAULT_REGION="us-east-1")
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        return spawn(cmd, self.log_file, cwd=self.root, env=env)

    def wait_healthy(self, port: int, pid: int, timeout: float) -> None:
        wait_until(lambda: self.healthy(port), "s3", timeout, self.log_file, pid)

    @staticmethod
    def healthy(port: int, bucket: str | None = None) -> bool:
        try:
            s3 = client(port)
            if bucket is None:
                s3.list_buckets()
            else:
                s3.head_bucket(Bucket=bucket)
            return True
        except (BotoCoreError, ClientError):
            return False

    @staticmethod
    def ensure_bucket(port: int, bucket: str) -> None:
        s3 = client(port)
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            s3.create_bucket(Bucket=bucket)

    @staticmethod
    def stop(pid: int, timeout: float = 10) -> None:
        stop_pid(pid, timeout)
