"""The hosts file's bytes: the write-ahead journal's format, and how two versions compare.

Pure functions over bytes (no file is opened here): the journal of an in-place write
(:class:`Journal`: path, old content, new content, checked by SHA-256), whether a file is a torn
mix of an old and a new content (:func:`is_torn_between`), and where two texts start and stop
differing (the in-place patch and the guard's reading of a writer's bytes).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

_MAGIC = b"detoxd hosts write-ahead journal v1\n"
_LENGTHS = struct.Struct(">IQQ")  # path, old content, new content
_DIGEST_SIZE = hashlib.sha256().digest_size
# A crash tears a write at page granularity at worst; each page of a torn file is checked alone.
PAGE = 4096


@dataclass(frozen=True)
class Journal:
    path: bytes
    old: bytes
    new: bytes


def is_torn_between(current: bytes, old: bytes, new: bytes) -> bool:
    """Whether ``current`` can be ``old`` partly overwritten with ``new`` from offset 0.

    Page by page: each page holds the new bytes up to some offset and the old bytes after it
    (all new, all old, or the page where the writer stopped), and the file is no longer than
    both versions (it only shrinks at the final truncate).
    """
    if len(current) > max(len(old), len(new)):
        return False
    for start in range(0, len(current), PAGE):
        page = current[start:start + PAGE]
        new_page = new[start:start + PAGE]
        if page == new_page:
            continue
        switch = start + common_prefix_length(page, new_page)
        if page[switch - start:] != old[switch:start + len(page)]:
            return False
    return True


def common_prefix_length(first: bytes | memoryview, second: bytes | memoryview) -> int:
    low, high = 0, min(len(first), len(second))  # the prefix is at least low, at most high
    while low < high:
        middle = (low + high + 1) // 2
        if first[:middle] == second[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def common_tail_start(first: bytes | memoryview, second: bytes | memoryview, low: int) -> int:
    """Where the longest tail two texts of the same length share begins, searched from ``low``
    (the texts differ before it): a binary search, each step one C-level compare."""
    high = len(first)
    while low < high:
        middle = (low + high) // 2
        if first[middle:] == second[middle:]:
            high = middle
        else:
            low = middle + 1
    return low


def encode_journal(journal: Journal) -> tuple[bytes, ...]:
    header = _MAGIC + _LENGTHS.pack(len(journal.path), len(journal.old), len(journal.new))
    digest = hashlib.sha256()
    parts = (header, journal.path, journal.old, journal.new)
    for part in parts:
        digest.update(part)
    return (*parts, digest.digest())


def decode_journal(raw: bytes) -> Journal | None:
    """The journal, or None when it is torn or damaged."""
    body_start = len(_MAGIC) + _LENGTHS.size
    if len(raw) < body_start + _DIGEST_SIZE or not raw.startswith(_MAGIC):
        return None
    path_length, old_length, new_length = _LENGTHS.unpack_from(raw, len(_MAGIC))
    if body_start + path_length + old_length + new_length + _DIGEST_SIZE != len(raw):
        return None
    if hashlib.sha256(memoryview(raw)[:-_DIGEST_SIZE]).digest() != raw[-_DIGEST_SIZE:]:
        return None
    old_start = body_start + path_length
    new_start = old_start + old_length
    view = memoryview(raw)
    return Journal(bytes(view[body_start:old_start]), bytes(view[old_start:new_start]),
                    bytes(view[new_start:new_start + new_length]))
