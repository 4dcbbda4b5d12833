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


def message(ident: int, flags: int, questions: list[bytes], answers: list[tuple[bytes, int, bytes]]) -> bytes:
    """A DNS message built by hand: each answer is (owner name as wire bytes, type, rdata)."""
    header = struct.pack("!HHHHHH", ident, flags, len(questions), len(answers), 0, 0)
    body = b"".join(name + struct.pack("!HH", 1, 1) for name in questions)
    body += b"".join(name + struct.pack("!HHIH", rtype, 1, 60, len(data)) + data
                     for name, rtype, data in answers)
    return header + body


TWITTER = b"\x07twitter\x03com\x00"


def test_query_asks_for_aaaa_recursively_and_drops_a_trailing_dot() -> None:
    wire = query("x.org.", 0xBEEF, qtype=28)
    assert wire[:12] == struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0)
    assert wire[12:] == b"\x01x\x03org\x00" + struct.pack("!HH", 28, 1)
    # The name goes out as given (DNS ignores case), only one trailing dot dropped; any 16-bit type.
    assert query("WWW.BOX.", 1, qtype=0xFFFF)[12:] == b"\x03WWW\x03BOX\x00\xff\xff\x00\x01"


def test_a_mix_of_null_and_real_addresses_is_not_blocked() -> None:
    # An engine that blocks only some of a name's records still lets the client through.
    assert not is_blocked(Answer("NOERROR", ("0.0.0.0", "104.244.42.1")))
    assert not is_blocked(Answer("NOERROR", ("2606:4700::1", "::")))
    assert is_blocked(Answer("NOERROR", ("::",)))
    assert is_blocked(Answer("NOERROR", ("0.0.0.0",)))
    assert is_blocked(Answer("NXDOMAIN", ("104.244.42.1",)))  # NXDOMAIN decides whatever follows
    assert not is_blocked(Answer("REFUSED", ("0.0.0.0",)))


def test_every_response_code_is_named_and_an_unknown_one_is_its_number() -> None:
    names = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "6", "15"]
    for rcode, name in zip([0, 1, 2, 3, 4, 5, 6, 15], names, strict=True):
        # Other flag bits set (QR, RD, RA, AD) never leak into the code.
        assert parse(message(9, 0x81A0 | rcode, [TWITTER], []), 9) == Answer(name, ())


def test_a_header_alone_is_a_message_and_anything_shorter_is_not() -> None:
    assert parse(struct.pack("!HHHHHH", 5, 0x8000, 0, 0, 0, 0), 5) == Answer("NOERROR", ())
    with pytest.raises(ValueError, match=r"^short DNS message$"):
        parse(struct.pack("!HHHHHH", 5, 0x8000, 0, 0, 0, 0)[:11], 5)


def test_a_query_is_not_a_response() -> None:
    with pytest.raises(ValueError, match=r"^not the response to our query$"):
        parse(message(5, 0x0100, [TWITTER], []), 5)  # QR clear: our own query echoed back
    with pytest.raises(ValueError, match=r"^not the response to our query$"):
        parse(message(5, 0x0101, [TWITTER], []), 5)  # QR clear, whatever the other bits say
    assert parse(message(0xBEEF, 0x8000, [TWITTER], []), 0xBEEF) == Answer("NOERROR", ())  # ids past 32767
    assert parse(message(5, 0x8000, [TWITTER], []), 5) == Answer("NOERROR", ())


def test_every_question_and_answer_is_skipped_whatever_its_name() -> None:
    uncompressed = message(3, 0x8180, [TWITTER, b"\x03www" + TWITTER], [
        (TWITTER, 5, b"\x03www\xc0\x0c"),                  # a CNAME: skipped, not an address
        (b"\x03www\xc0\x0c", 1, bytes([104, 244, 42, 1])),  # a label, then a pointer
        (b"\xc0\x0c", 28, bytes(15) + b"\x01"),
        (b"\x00", 1, bytes([1, 2, 3])),                    # an A record of the wrong size: ignored
        (b"\x00", 28, bytes(4)),                           # an AAAA record of the wrong size: ignored
        (b"\xc1\x00", 16, b"x" * 40_000),                  # a pointer past 255; rdata past 32767 bytes
        (b"\xff\xff", 1, bytes([9, 9, 9, 9])),
    ])
    assert parse(uncompressed, 3) == Answer("NOERROR", ("104.244.42.1", "::1", "9.9.9.9"))


def test_an_answer_cut_anywhere_is_malformed() -> None:
    whole = message(4, 0x8180, [TWITTER], [(b"\xc0\x0c", 1, bytes([10, 0, 0, 1]))])
    assert parse(whole, 4) == Answer("NOERROR", ("10.0.0.1",))
    # Cut inside the rdata, right after the fixed fields, inside them, inside the owner name.
    for cut, reason in [(1, "truncated answer"), (4, "truncated answer"), (5, "truncated answer"),
                        (13, "truncated answer"), (14, "truncated answer"),
                        (16, "truncated name")]:
        with pytest.raises(ValueError, match=rf"^{reason}$"):
            parse(whole[:-cut], 4)
    # A record's rdata that ends exactly at the end of the message is whole.
    assert parse(message(4, 0x8180, [], [(b"\x00", 1, bytes([10, 0, 0, 2]))]), 4).addresses == ("10.0.0.2",)
    # So is a last record without rdata, its fixed fields ending exactly at the end.
    assert parse(message(4, 0x8180, [], [(b"\x00", 16, b"")]), 4) == Answer("NOERROR", ())


def test_a_name_of_127_labels_is_read_and_one_of_128_is_refused() -> None:
    longest = b"\x01a" * 127 + b"\x00"
    assert parse(message(6, 0x8180, [longest], [(longest, 1, bytes(4))]), 6).addresses == ("0.0.0.0",)
    with pytest.raises(ValueError, match=r"^name too long$"):
        parse(message(6, 0x8180, [b"\x01a" * 128 + b"\x00"], []), 6)
    with pytest.raises(ValueError, match=r"^truncated name$"):
        parse(struct.pack("!HHHHHH", 6, 0x8180, 1, 0, 0, 0) + b"\x01a\x05abc", 6)  # a label past the end
