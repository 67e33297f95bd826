"""The one way to talk to the S3 endpoint of the settings (raw events, a lake root on S3)."""

from __future__ import annotations

from pipelines.settings import Settings


def s3_client(settings: Settings, max_pool: int = 16):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        aws_access_key_id=settings.s3_access_key_id or None,
        aws_secret_access_key=settings.s3_secret_access_key or None,
        region_name=settings.s3_region or None,
        config=Config(
            connect_timeout=5, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=max_pool,
        ),
    )
