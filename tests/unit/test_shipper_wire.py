"""The shipper reads XADD replies off its own socket: partial reads, several replies, errors."""

from __future__ import annotations

import pytest
import redis
from runwatch.workers.stream_writer import read_replies as _read_replies


class _Socket:
    """Hands out the reply bytes in the given pieces, as a TCP socket may."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)

    def recv(self, _size: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


def test_replies_split_anywhere_are_all_read():
    sock = _Socket(b"$15\r\n17000000", b"00000-0\r\n$15\r", b"\n1700000000000-1\r\n")
    _read_replies(sock, 2)
    assert sock.pieces == []


def test_an_error_reply_raises():
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        _read_replies(_Socket(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"), 1)


def test_a_closed_connection_raises():
    with pytest.raises(redis.ConnectionError):
        _read_replies(_Socket(b"$15\r\n1700"), 1)
