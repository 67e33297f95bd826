"""`lakehouse cdc decode VALUE_FILE [--key KEY_FILE] [--topic TOPIC]`: the decoder for people and tools.

Prints exactly one JSON object (the contract in decoder.CONTRACT_KEYS) on stdout; for input it cannot
decode, one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipelines.cdc.decoder import DecodeError, decode

EXIT_UNDECODABLE = 2


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DecodeError(f"cannot read {what} file {path}: {exc.strerror}") from exc


def _decode_command(args: argparse.Namespace) -> int:
    try:
        value = _read(args.value_file, "value")
        key = _read(args.key, "key") if args.key else None
    except DecodeError as exc:  # names the file it could not read
        print(f"lakehouse cdc decode: {exc}", file=sys.stderr)
        return EXIT_UNDECODABLE
    try:
        if not value.strip():
            raise DecodeError("the file is empty (a tombstone is the JSON literal null)")
        record = decode(value, key, args.topic)
    except DecodeError as exc:
        print(f"lakehouse cdc decode: {args.value_file}: {exc}", file=sys.stderr)
        return EXIT_UNDECODABLE
    print(json.dumps(record.contract(), ensure_ascii=False))
    return 0


def add_cdc_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    cdc = subparsers.add_parser("cdc", help="Debezium change events")
    commands = cdc.add_subparsers(dest="cdc_command", metavar="{decode}", required=True)
    decode_parser = commands.add_parser(
        "decode",
        help="decode one Debezium record value (JSON text; `null` = tombstone) and print it as JSON",
    )
    decode_parser.add_argument("value_file", metavar="VALUE_FILE")
    decode_parser.add_argument("--key", metavar="KEY_FILE", help="the record key (JSON text)")
    decode_parser.add_argument("--topic", metavar="TOPIC", help="the topic the record came from")
    decode_parser.set_defaults(func=_decode_command)
    return cdc
