"""Where raw event objects live: S3 (any S3-compatible endpoint) or a local folder, same layout.

    <events_prefix>/year=YYYY/month=MM/day=DD/<name>.jsonl[.gz]

Listing is always per day prefix (or, for discovering days, per year/month level with a delimiter),
so its cost follows the objects of the days asked about, never the history of the bucket.

`settings.events_prefix` is a key prefix in `settings.s3_bucket` (`raw/events`), a full
`s3://bucket/prefix` URL, or a local folder (`file:///path` or an absolute path) laid out the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from pipelines.s3 import s3_client
from pipelines.settings import Settings

_DAY_PART = re.compile(r"year=(\d{4})/month=(\d{2})/day=(\d{2})/")


class EventSourceError(RuntimeError):
    """The events location cannot be listed or read (bucket missing, no permission, folder absent)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # S3: the object key; folder: the path relative to the folder
    etag: str  # S3: the ETag without quotes; folder: modification time and size (a new write changes it)
    size: int
    last_modified: datetime


class ObjectChanged(Exception):
    """The object no longer has the ETag it was listed with: it was rewritten, so it is read next run."""


def day_prefix(day: date) -> str:
    return f"year={day:%Y}/month={day:%m}/day={day:%d}/"


def day_of_key(key: str) -> date | None:
    """The day of the prefix an object key lies under (the partition it belongs to)."""
    match = _DAY_PART.search(key)
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


@dataclass(frozen=True)
class DayListing:
    """The day prefixes found, and the folders and objects that are not in the layout (not ingested)."""

    days: list[date]
    outside_layout: list[str]
    before_start: list[str] = field(default_factory=list)  # day folders before `since`, when asked for

    def notes(self, location: str, start: date) -> list[str]:
        """One warning for each kind of folder or object no run will ingest (none when all is in order)."""
        notes = []
        if self.outside_layout:
            notes.append(_not_ingested(self.outside_layout, 5, f"folders or objects under {location}/ are outside "
                                       "the layout year=YYYY/month=MM/day=DD/"))
        if self.before_start:
            notes.append(_not_ingested(self.before_start, 3, f"day folders under {location}/ are before "
                                       f"partitions_start_date {start}"))
        return notes


def _not_ingested(names: list[str], shown: int, what: str) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} {what} and are not ingested: {', '.join(names[:shown])}{more}"


def _wanted(name: str) -> bool:
    # writers stage objects under hidden names before an atomic rename (see the workload's sink)
    return bool(name) and not name.startswith((".", "_")) and not name.endswith("/")


class EventStore(Protocol):
    location: str  # a URL for lineage and messages: s3://bucket/prefix or file:///path

    def list_day(self, day: date) -> list[ObjectInfo]: ...
    def list_days(self, since: date, report_earlier: bool = False) -> DayListing: ...
    def read(self, info: ObjectInfo) -> bytes: ...


class S3EventStore:
    def __init__(self, settings: Settings, bucket: str, prefix: str, max_pool: int = 16):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}"
        self.client = s3_client(settings, max_pool)

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _error(self, exc: Exception, what: str) -> EventSourceError:
        return EventSourceError(f"{self.location}: cannot {what}: {exc}")

    def list_day(self, day: date) -> list[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        found = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(day_prefix(day))
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    if _wanted(item["Key"].rsplit("/", 1)[-1]):
                        found.append(
                            ObjectInfo(item["Key"], item["ETag"].strip('"'), item["Size"], item["LastModified"])
                        )
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, f"list {day_prefix(day)}") from exc
        return sorted(found, key=lambda o: o.key)

    def _children(self, relative: str) -> tuple[list[str], list[str]]:
        """Names of the folders and of the objects just below `relative`."""
        from botocore.exceptions import BotoCoreError, ClientError

        base = self._key(relative)
        base = base if not base or base.endswith("/") else base + "/"
        folders, objects = [], []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base, Delimiter="/"
            ):
                folders.extend(p["Prefix"][len(base):].rstrip("/") for p in page.get("CommonPrefixes", ()))
                objects.extend(item["Key"][len(base):] for item in page.get("Contents", ()))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, f"list {relative or '/'}") from exc
        return folders, objects

    def list_days(self, since: date, report_earlier: bool = False) -> DayListing:
        return _walk_days(self._children, since, report_earlier)

    def read(self, info: ObjectInfo) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            # If-Match: the bytes we record under this ETag are the bytes that have it
            response = self.client.get_object(Bucket=self.bucket, Key=info.key, IfMatch=f'"{info.etag}"')
            return response["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise ObjectChanged(info.key) from exc
            raise self._error(exc, f"read {info.key}") from exc
        except BotoCoreError as exc:
            raise self._error(exc, f"read {info.key}") from exc


class DirectoryEventStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.location = self.root.resolve().as_uri()

    def _check(self) -> None:
        if not self.root.is_dir():
            raise EventSourceError(f"{self.root}: events folder does not exist")

    @staticmethod
    def _etag(stat: os.stat_result) -> str:
        return f"{stat.st_mtime_ns:x}-{stat.st_size:x}"

    def list_day(self, day: date) -> list[ObjectInfo]:
        self._check()
        folder = self.root / day_prefix(day)
        if not folder.is_dir():
            return []
        found = []
        for path in folder.rglob("*"):
            if path.is_file() and _wanted(path.name):
                stat = path.stat()
                found.append(
                    ObjectInfo(
                        path.relative_to(self.root).as_posix(),
                        self._etag(stat),
                        stat.st_size,
                        datetime.fromtimestamp(stat.st_mtime, tz=UTC),
                    )
                )
        return sorted(found, key=lambda o: o.key)

    def _children(self, relative: str) -> tuple[list[str], list[str]]:
        folder = self.root / relative
        if not folder.is_dir():
            return [], []
        children = list(folder.iterdir())
        return [p.name for p in children if p.is_dir()], [p.name for p in children if p.is_file()]

    def list_days(self, since: date, report_earlier: bool = False) -> DayListing:
        self._check()
        return _walk_days(self._children, since, report_earlier)

    def read(self, info: ObjectInfo) -> bytes:
        path = self.root / info.key
        try:
            before = path.stat()
            if self._etag(before) != info.etag:
                raise ObjectChanged(info.key)
            data = path.read_bytes()
            if self._etag(path.stat()) != info.etag:
                raise ObjectChanged(info.key)
        except FileNotFoundError as exc:
            raise ObjectChanged(info.key) from exc
        return data


_FOLDER = {field: re.compile(rf"{field}=([0-9]{{{width}}})").fullmatch
           for field, width in (("year", 4), ("month", 2), ("day", 2))}


def _value(name: str, field: str) -> int | None:
    match = _FOLDER[field](name)
    return int(match[1]) if match else None


def _walk_days(children, since: date, report_earlier: bool = False) -> DayListing:
    """Day prefixes on or after `since`, descending only into years and months that can hold them; and
    what lies outside the layout on the way (an unpadded `month=4`, a `month=13`, an object beside the day
    folders), which no day's listing would ever read; with `report_earlier`, the year, month or day
    folders before `since` too (not descended into)."""
    days, outside, earlier = [], [], []

    def below(relative: str, field: str) -> list[tuple[str, int]]:
        folders, objects = children(relative)
        outside.extend(f"{relative}{name}" for name in objects if _wanted(name))
        found = []
        for name in folders:
            value = _value(name, field)
            if value is not None and (field == "year" or 1 <= value <= (12 if field == "month" else 31)):
                found.append((name, value))
            elif _wanted(name):
                outside.append(f"{relative}{name}/")
        return found

    for year_name, year in below("", "year"):
        if year < since.year:
            earlier.append(f"{year_name}/")
            continue
        for month_name, month in below(f"{year_name}/", "month"):
            if (year, month) < (since.year, since.month):
                earlier.append(f"{year_name}/{month_name}/")
                continue
            for day_name, day in below(f"{year_name}/{month_name}/", "day"):
                try:
                    found = date(year, month, day)
                except ValueError:
                    outside.append(f"{year_name}/{month_name}/{day_name}/")
                    continue
                if found >= since:
                    days.append(found)
                else:
                    earlier.append(f"{year_name}/{month_name}/{day_name}/")
    return DayListing(sorted(set(days)), sorted(outside), sorted(earlier) if report_earlier else [])


def event_store_for(settings: Settings) -> EventStore:
    prefix = settings.events_prefix
    if prefix.startswith("file://"):
        return DirectoryEventStore(urlparse(prefix).path)
    if prefix.startswith("/"):
        return DirectoryEventStore(prefix)
    if prefix.startswith("s3://"):
        parsed = urlparse(prefix)
        return S3EventStore(settings, parsed.netloc, parsed.path)
    return S3EventStore(settings, settings.s3_bucket, prefix)


def read_ahead(store: EventStore, objects: list[ObjectInfo], threads: int = 8, window: int = 16
               ) -> Iterator[tuple[ObjectInfo, bytes | None]]:
    """Objects' bytes in list order, `threads` downloads in flight and at most `window` objects held.
    An object rewritten since it was listed yields None (it is picked up, with its new ETag, next run)."""

    def fetch(info: ObjectInfo) -> bytes | None:
        try:
            return store.read(info)
        except ObjectChanged:
            return None

    if not objects:
        return
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="events-read") as pool:
        pending = []
        position = 0
        while position < len(objects) or pending:
            while position < len(objects) and len(pending) < window:
                pending.append((objects[position], pool.submit(fetch, objects[position])))
                position += 1
            info, future = pending.pop(0)
            yield info, future.result()
