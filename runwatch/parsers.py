"""Parsers of ``RUNWATCH_*`` values: each knows the form it accepts and how to write a value back.

A parser raises ``ValueError`` on a malformed value and nothing else; ``runwatch.settings`` turns
that into a ``ConfigError`` naming the variable, the expected form and an example. Values arrive
stripped of surrounding whitespace, and blank values never reach a parser (blank means unset).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_HOOK = re.compile(rf"{_DOTTED}:{_DOTTED}")
_POSTGRES_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+psycopg"})
_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


@dataclass(frozen=True)
class Parser:
    """How one kind of value is read from, and written back to, an environment variable."""

    expected: str  # completes "RUNWATCH_X must be ...", e.g. "a positive integer"
    parse: Callable[[str], Any]
    format: Callable[[Any], str] = str
    example: str | None = None  # shown after the expected form; else the variable's default
    mask: Callable[[str], str] = str  # how a raw value may be echoed in an error message


def integer(*, minimum: int) -> Parser:
    def parse(raw: str) -> int:
        if not _INTEGER.fullmatch(raw) or int(raw) < minimum:
            raise ValueError(raw)
        return int(raw)

    return Parser("a positive integer" if minimum == 1 else f"an integer >= {minimum}", parse)


def number(*, minimum: float) -> Parser:
    def parse(raw: str) -> float:
        if not _NUMBER.fullmatch(raw) or not math.isfinite(float(raw)) or float(raw) < minimum:
            raise ValueError(raw)
        return float(raw)

    return Parser(f"a number >= {minimum:g}", parse, format=lambda v: f"{v:g}")


def choice(*options: str) -> Parser:
    """One of ``options``, case-insensitive; the value is the lower-case option."""

    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError(raw)
        return raw.lower()

    return Parser(f"one of {', '.join(options)}", parse, example="")


def _text(raw: str) -> str:
    return raw


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


def normalize_database_url(url: str) -> str:
    """Make SQLAlchemy use psycopg 3 for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe to print."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return "<a malformed URL>"
    userinfo, _, hostport = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{hostport}").geturl()


def _url(schemes: frozenset[str]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if "://" not in raw or urlsplit(raw).scheme not in schemes:  # urlsplit: ValueError on a bad netloc
            raise ValueError(mask_url(raw))
        return raw

    return parse


def _postgres_url(raw: str) -> str:
    return normalize_database_url(_url(_POSTGRES_SCHEMES)(raw))


def _bind(raw: str) -> str:
    """What gunicorn's ``--bind`` takes: ``HOST:PORT``, ``[IPV6]:PORT``, ``unix:PATH`` or ``fd://N``."""
    if (raw.startswith("unix:") and len(raw) > 5) or (raw.startswith("fd://") and raw[5:].isdigit()):
        return raw
    host, _, port = raw.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if not host or " " in host or (":" in host and not bracketed) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(raw)
    return raw


def _key_names(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if not all(_KEY_NAME.fullmatch(name) for name in names):
        raise ValueError(raw)
    return names


def _hook(raw: str) -> str:
    if not _HOOK.fullmatch(raw):
        raise ValueError(raw)
    return raw


TEXT = Parser("a non-empty string", _text)
PATH = Parser("a path", _path, example="/srv/runwatch")
POSTGRES_URL = Parser(
    "a PostgreSQL URL",
    _postgres_url,
    example="postgresql://user@host:5432/runwatch",
    mask=mask_url,
)
REDIS_URL = Parser("a Redis URL", _url(_REDIS_SCHEMES), example="redis://127.0.0.1:6379/0", mask=mask_url)
AMQP_URL = Parser(
    "an AMQP URL", _url(frozenset({"amqp", "amqps"})), example="amqp://guest:guest@127.0.0.1:5672/%2F", mask=mask_url
)
HTTP_URL = Parser(
    "an HTTP URL", _url(frozenset({"http", "https"})), example="http://guest:guest@127.0.0.1:15672", mask=mask_url
)
BIND_ADDRESS = Parser("HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N", _bind, example="0.0.0.0:8000")
KEY_NAMES = Parser("comma-separated key names", _key_names, format=",".join, example="ssn,x-api-key")
LOG_FILE = Parser("a file path, or - for standard output", _text, example="/var/log/runwatch/access.log")
HOOK_PATH = Parser("a module:function path", _hook, example="myapp.redaction:scrub")
