from __future__ import annotations

import struct

import pytest

from detoxd.core.dnswire import Answer, is_blocked, parse, query


def response(ident: int, rcode: int, answers: list[tuple[int, bytes]]) -> bytes:
    question = query("twitter.com", ident)[12:]
    header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, len(answers), 0, 0)
    records = b"".join(b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 60, len(data)) + data
                       for rtype, data in answers)
    return header + question + records


def test_query_wire_format() -> None:
    assert query("a.bc", 0x1234) == (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                                     b"\x01a\x02bc\x00\x00\x01\x00\x01")


def test_parse_answers_and_codes() -> None:
    assert parse(response(7, 0, [(1, bytes(4)), (28, bytes(16))]), 7) == Answer("NOERROR", ("0.0.0.0", "::"))
    assert parse(response(7, 3, []), 7).rcode == "NXDOMAIN"
    with pytest.raises(ValueError):
        parse(response(8, 0, []), 7)  # someone else's answer
    with pytest.raises(ValueError):
        parse(response(7, 0, [(1, bytes(4))])[:-2], 7)


def test_what_counts_as_blocked() -> None:
    assert is_blocked(Answer("NXDOMAIN", ()))
    assert is_blocked(Answer("NOERROR", ("0.0.0.0", "::")))
    assert not is_blocked(Answer("NOERROR", ("104.244.42.1",)))
    assert not is_blocked(Answer("NOERROR", ()))
    assert not is_blocked(Answer("SERVFAIL", ()))
