"""Just enough of the DNS wire format (RFC 1035) for doctor to ask an engine what a client of the
detox would get: one A or AAAA question out, the response code and addresses back. Pure."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


@dataclass(frozen=True)
class Answer:
    rcode: str
    addresses: tuple[str, ...]


def query(name: str, ident: int, qtype: int = TYPE_A) -> bytes:
    """A recursive query (RD set) for ``name`` (already validated, ASCII)."""
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    # Not mutated (scripts/mutation): "ascii" → "ASCII" would name the same codec.
    labels = b"".join(bytes([len(label)]) + label.encode("ascii")  # pragma: no mutate
                      for label in name.rstrip(".").split("."))
    return header + labels + b"\x00" + struct.pack("!HH", qtype, CLASS_IN)


def parse(data: bytes, ident: int) -> Answer:
    """The response's code and its A/AAAA addresses; ValueError for anything malformed."""
    if len(data) < 12:
        raise ValueError("short DNS message")
    got, flags, questions, answers, _, _ = struct.unpack("!HHHHHH", data[:12])
    if got != ident or not flags & 0x8000:
        raise ValueError("not the response to our query")
    offset = 12
    for _ in range(questions):
        offset = _skip_name(data, offset) + 4
    addresses = []
    for _ in range(answers):
        offset = _skip_name(data, offset)
        if offset + 10 > len(data):
            raise ValueError("truncated answer")
        rtype, _, _, length = struct.unpack("!HHIH", data[offset:offset + 10])
        offset += 10
        rdata = data[offset:offset + length]
        if len(rdata) != length:
            raise ValueError("truncated answer")
        if rtype == TYPE_A and length == 4:
            addresses.append(str(ipaddress.IPv4Address(rdata)))
        elif rtype == TYPE_AAAA and length == 16:
            addresses.append(str(ipaddress.IPv6Address(rdata)))
        offset += length
    return Answer(RCODES.get(flags & 0x000F, str(flags & 0x000F)), tuple(addresses))


def _skip_name(data: bytes, offset: int) -> int:
    for _ in range(128):  # names have at most 127 labels: a loop means a malicious message
        if offset >= len(data):
            raise ValueError("truncated name")
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2  # a compression pointer ends the name
        offset += 1 + length
    raise ValueError("name too long")


def is_blocked(answer: Answer) -> bool:
    """What a blocking engine answers: NXDOMAIN, or only null addresses (0.0.0.0, ::)."""
    if answer.rcode == "NXDOMAIN":
        return True
    return answer.rcode == "NOERROR" and bool(answer.addresses) and all(
        address in ("0.0.0.0", "::") for address in answer.addresses)  # noqa: S104
