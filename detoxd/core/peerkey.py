"""The early-end key held by peers: SLIP-39 shares of a random secret, and its verifier (pure).

With ``detox.lock: peers`` the CLI makes a random secret, splits it into one share per peer with
SLIP-39 (Trezor's ``shamir-mnemonic``: Shamir's secret sharing over GF(256), shares written as
20 words from a 1024-word list with an RS1024 checksum that detects any three wrong words), and
gives the daemon only a :class:`Verifier`. Any ``needed`` shares recover the secret; fewer
reveal nothing about it (Shamir's scheme is information-theoretically hiding).

The proof and the verifier::

    proof    = scrypt(secret, salt, N=2**17, r=8, p=1, 32 bytes)   # slow: made by the CLI
    verifier = SHA-256(VERIFIER_CONTEXT || proof)                   # kept by the daemon

The CLI sends the *proof* to end a detox, never the secret or a share; the daemon compares
the proof's hash with the verifier in constant time. The verifier is not a credential (it is
a hash of one), so neither the daemon's memory, its state directory nor the socket ever holds
something from which a share or the secret could be recomputed. scrypt's parameters are the
OWASP minimum for interactive use (128 MiB, about 0.6 s on a 2-core VM); they only matter if
the secret were guessable, which 128 random bits are not — they cost an attacker who stole the
verifier as much as a password hash would, and they are stored with it so they can grow.

The shares are standard SLIP-39 (group threshold 1, one group of ``needed``-of-``holders``,
empty passphrase), so any SLIP-39 tool can recover the secret too. The share set's identifier
(15 bits, the first two words of every share) is public: the daemon keeps it to recognise a
share of another detox.

Randomness is injected: the secret, salt and identifier are parameters; only the polynomial
coefficients come from the library's own CSPRNG (:func:`secrets.token_bytes`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import shamir_mnemonic
from shamir_mnemonic import rs1024, wordlist
from shamir_mnemonic.constants import (
    CUSTOMIZATION_STRING_EXTENDABLE,
    CUSTOMIZATION_STRING_ORIG,
    ID_LENGTH_BITS,
    MAX_SHARE_COUNT,
)

SECRET_BYTES = 16  # SLIP-39's minimum strength, 128 bits: 20-word shares
SHARE_WORDS = 20
SET_WORDS = 2  # the identifier (and flags) words every share of one set begins with
MIN_NEEDED = 2
MAX_NEEDED = 5
MAX_HOLDERS = MAX_SHARE_COUNT  # 16: SLIP-39's limit
SALT_BYTES = 16
PROOF_BYTES = 32
VERIFIER_CONTEXT = b"detoxd peer lock verifier v1\x00"
IDENTIFIER_LIMIT = 1 << ID_LENGTH_BITS
_EXTENDABLE = True  # SLIP-39's current default: the flag is part of the checksum's customization
_ITERATION_EXPONENT = 0  # SLIP-39's own passphrase stretching: pointless for a random secret


@dataclass(frozen=True)
class KdfParams:
    """scrypt's cost parameters (RFC 7914); stored with the verifier."""

    n: int = 2**17
    r: int = 8
    p: int = 1

    @property
    def memory_bytes(self) -> int:
        return 128 * self.r * self.n * self.p

    def problem(self) -> str | None:
        """Why these parameters are unacceptable, or None. Bounds keep both a weak verifier
        and a verifier that would take the daemon's machine minutes to check out."""
        if not (2**14 <= self.n <= 2**20 and self.n & (self.n - 1) == 0):
            return "scrypt N must be a power of 2 from 2**14 to 2**20"
        if not (1 <= self.r <= 32 and 1 <= self.p <= 4):
            return "scrypt r must be 1 to 32 and p 1 to 4"
        if self.memory_bytes > 1 << 30:
            return "scrypt parameters need more than 1 GiB"
        return None


DEFAULT_KDF = KdfParams()


@dataclass(frozen=True)
class Verifier:
    """What the daemon keeps: enough to check a proof, never enough to make one."""

    digest: bytes  # SHA-256(VERIFIER_CONTEXT || proof)
    salt: bytes
    kdf: KdfParams
    share_set: int  # the SLIP-39 identifier: public, the first two words of every share
    needed: int
    holders: tuple[str, ...]  # share i is holders[i]'s

    def problem(self) -> str | None:
        """Why a verifier (from a request or the state file) is malformed, or None."""
        kdf_problem = self.kdf.problem()
        if kdf_problem:
            return kdf_problem
        if len(self.digest) != hashlib.sha256().digest_size or len(self.salt) != SALT_BYTES:
            return f"the verifier needs a 32-byte digest and a {SALT_BYTES}-byte salt"
        if not 0 <= self.share_set < IDENTIFIER_LIMIT:
            return "the share set identifier is out of range"
        if not MIN_NEEDED <= self.needed <= MAX_NEEDED:
            return f"peers needed must be {MIN_NEEDED} to {MAX_NEEDED}"
        if not self.needed <= len(self.holders) <= MAX_HOLDERS:
            return f"there must be {self.needed} to {MAX_HOLDERS} peers holding shares"
        if any(not isinstance(name, str) or not 0 < len(name) <= 100 for name in self.holders):
            return "each peer needs a name of at most 100 characters"
        return None


@dataclass(frozen=True)
class ShareSet:
    """The CLI's, in memory only, for the moment of writing the cards: never persisted."""

    shares: tuple[str, ...]  # one 20-word mnemonic per holder, in the holders' order
    verifier: Verifier


def split(
    secret: bytes, holders: Sequence[str], needed: int, *, identifier: int, salt: bytes,
    kdf: KdfParams = DEFAULT_KDF,
) -> ShareSet:
    """Split ``secret`` into one SLIP-39 share per holder, any ``needed`` of which recover it."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"the secret must be {SECRET_BYTES} bytes")
    encrypted = shamir_mnemonic.EncryptedMasterSecret.from_master_secret(
        secret, b"", identifier, _EXTENDABLE, _ITERATION_EXPONENT)
    groups = shamir_mnemonic.split_ems(1, [(needed, len(holders))], encrypted)
    shares = tuple(str(share.mnemonic()) for share in groups[0])
    verifier = Verifier(digest=verifier_digest(proof(secret, salt, kdf)), salt=salt, kdf=kdf,
                        share_set=identifier, needed=needed, holders=tuple(holders))
    problem = verifier.problem()
    if problem:
        raise ValueError(problem)
    return ShareSet(shares, verifier)


def proof(secret: bytes, salt: bytes, kdf: KdfParams) -> bytes:
    """The slow hash the CLI sends to end a detox (never the secret itself)."""
    return hashlib.scrypt(secret, salt=salt, n=kdf.n, r=kdf.r, p=kdf.p,
                          maxmem=kdf.memory_bytes + (1 << 20), dklen=PROOF_BYTES)


def verifier_digest(proof_bytes: bytes) -> bytes:
    return hashlib.sha256(VERIFIER_CONTEXT + proof_bytes).digest()


def accepts(verifier: Verifier, proof_bytes: bytes) -> bool:
    """Constant-time: a timing difference must not tell how much of a forged proof was right."""
    return hmac.compare_digest(verifier_digest(proof_bytes), verifier.digest)


def set_words(identifier: int) -> str:
    """The two words every share of this set begins with: how a person tells sets apart."""
    words = shamir_mnemonic.Share(identifier, _EXTENDABLE, _ITERATION_EXPONENT, 0, 1, 1, 0, 2,
                                  bytes(SECRET_BYTES)).words()
    return " ".join(words[:SET_WORDS])


# ---- the verifier as JSON (the start request and the state file) ----

def verifier_to_json(verifier: Verifier) -> dict[str, Any]:
    return {
        "kdf": "scrypt", "n": verifier.kdf.n, "r": verifier.kdf.r, "p": verifier.kdf.p,
        "salt": verifier.salt.hex(), "digest": verifier.digest.hex(),
        "share_set": verifier.share_set, "needed": verifier.needed,
        "holders": list(verifier.holders),
    }


def verifier_from_json(data: object) -> Verifier:
    """Raises ValueError (with a message for the user) on anything malformed."""
    if not isinstance(data, dict) or data.get("kdf") != "scrypt":
        raise ValueError("the verifier must be an object with kdf 'scrypt'")
    try:
        integers = [data[key] for key in ("n", "r", "p", "share_set", "needed")]
        salt, digest, holders = bytes.fromhex(data["salt"]), bytes.fromhex(data["digest"]), data["holders"]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"malformed verifier: {error}") from None
    if any(type(value) is not int for value in integers) or not isinstance(holders, list):
        raise ValueError("malformed verifier: wrong types")
    n, r, p, share_set, needed = integers
    verifier = Verifier(digest, salt, KdfParams(n, r, p), share_set, needed, tuple(holders))
    problem = verifier.problem()
    if problem:
        raise ValueError(problem)
    return verifier


# ---- reading shares typed by a person ----

@dataclass(frozen=True)
class KnownSet:
    """A share set the daemon remembers: this detox's, or an earlier one's."""

    identifier: int
    started_at: datetime | None = None  # of the detox it belonged to; None: the current one


@dataclass(frozen=True)
class Share:
    mnemonic: str  # normalised: 20 full words, single spaces
    holder_index: int


class ShareProblem(ValueError):
    """What is wrong with a typed share, meant for the person typing it."""


def read_share(
    text: str, *, number: int, verifier_set: int, needed: int, holders: Sequence[str],
    earlier: Sequence[KnownSet] = (),
) -> Share:
    """Parse the ``number``-th share a person typed (the words from a card; numbers, case and
    extra spaces are ignored, a word may be shortened to its first four letters).

    Raises :class:`ShareProblem` naming which word of which share is wrong: a word not in the
    list, a word count, the one word the checksum points at, two swapped words, or a share of
    another detox (named by its first two words, and its date when it is an earlier one)."""
    label = f"share {number}"
    indices = _word_indices(text, label)
    if len(indices) != SHARE_WORDS:
        raise ShareProblem(f"{label} has {len(indices)} words; a share has {SHARE_WORDS}")
    if not _checksum_ok(indices):
        raise ShareProblem(f"{label}: {_locate_error(indices)}; compare it with the card word by word")
    mnemonic = wordlist.mnemonic_from_indices(indices)
    try:
        share = shamir_mnemonic.Share.from_mnemonic(mnemonic)
    except shamir_mnemonic.MnemonicError as error:
        raise ShareProblem(f"{label} is not a valid share: {error}") from None
    if share.identifier != verifier_set:
        raise ShareProblem(f"{label} {_other_set(share.identifier, verifier_set, earlier)}")
    if (share.group_threshold, share.group_count, share.member_threshold) != (1, 1, needed) \
            or not 0 <= share.index < len(holders):
        raise ShareProblem(f"{label} begins like this detox's shares but is not one of them")
    return Share(mnemonic, share.index)


def holder_of(share: Share, holders: Sequence[str]) -> str:
    return holders[share.holder_index]


def combine(shares: Sequence[Share], holders: Sequence[str]) -> bytes:
    """The secret from ``needed`` distinct shares (read by :func:`read_share`)."""
    seen: dict[int, int] = {}
    for number, share in enumerate(shares, start=1):
        if share.holder_index in seen:
            raise ShareProblem(f"share {number} is {holder_of(share, holders)}'s again "
                               f"(already share {seen[share.holder_index]}); ask another peer")
        seen[share.holder_index] = number
    try:
        return bytes(shamir_mnemonic.combine_mnemonics([share.mnemonic for share in shares]))
    except shamir_mnemonic.MnemonicError as error:
        # Valid shares of one set always combine; this is a forged or corrupted card.
        raise ShareProblem(f"these shares do not combine: {error}") from None


_NUMBERING = re.compile(r"\d+[.):]?")


def _word_indices(text: str, label: str) -> list[int]:
    """Word-list indices; every unknown word is named in one message."""
    tokens = [token for token in text.replace(",", " ").lower().split() if not _NUMBERING.fullmatch(token)]
    if not tokens:
        raise ShareProblem(f"{label} is empty")
    indices: list[int] = []
    unknown: list[str] = []
    for position, token in enumerate(tokens, start=1):
        index = _word_index(token)
        if index is None:
            unknown.append(f"word {position} ({token!r})")
        else:
            indices.append(index)
    if unknown:
        listed = ", ".join(unknown)
        raise ShareProblem(f"{label}: {listed} {'is' if len(unknown) == 1 else 'are'} not in the "
                           "SLIP-39 word list; check the card")
    return indices


def _word_index(token: str) -> int | None:
    """The word's index; a prefix of four letters or more stands for the one word it starts."""
    exact = wordlist.WORD_INDEX_MAP.get(token)
    if exact is not None:
        return int(exact)
    if len(token) >= 4:  # SLIP-39 words are unique in their first four letters
        index = _BY_PREFIX.get(token[:4])
        if index is not None and wordlist.WORDLIST[index].startswith(token):
            return index
    return None


_BY_PREFIX: dict[str, int] = {word[:4]: index for index, word in enumerate(wordlist.WORDLIST)}


def _checksum_ok(indices: Sequence[int]) -> bool:
    return any(rs1024.verify_checksum(indices, custom) for custom in _CUSTOMIZATIONS)


_CUSTOMIZATIONS = (CUSTOMIZATION_STRING_EXTENDABLE, CUSTOMIZATION_STRING_ORIG)


def _locate_error(indices: Sequence[int]) -> str:
    """Which word the checksum blames. RS1024's minimum distance is 4, so at most one word
    can be changed to make a wrong share valid: if one exists it is *the* wrong word."""
    for custom in _CUSTOMIZATIONS:
        position = _single_error_position(indices, custom)
        if position is not None:
            return f"word {position + 1} ({wordlist.WORDLIST[indices[position]]!r}) is wrong"
    for position in range(len(indices) - 1):
        swapped = [*indices[:position], indices[position + 1], indices[position], *indices[position + 2:]]
        if _checksum_ok(swapped):
            return f"words {position + 1} and {position + 2} are swapped"
    return "the checksum fails: more than one word is wrong"


def _single_error_position(indices: Sequence[int], custom: bytes) -> int | None:
    """The position where changing one word satisfies the checksum, found with linear algebra
    rather than 20 × 1023 checksum runs: RS1024's residue is affine over GF(2) in the words,
    ``residue(v ^ e) == residue(v) ^ linear(e)``, and ``linear`` is XOR-additive in ``e``."""
    prefix = list(custom)
    length = len(prefix) + len(indices)
    zero = _polymod([0] * length)
    target = _polymod(prefix + list(indices)) ^ 1  # verify_checksum wants a residue of 1
    for position in range(len(indices)):
        basis = []
        for bit in range(10):
            vector = [0] * length
            vector[len(prefix) + position] = 1 << bit
            basis.append(_polymod(vector) ^ zero)
        effect = [0] * 1024  # effect[delta] = linear(delta at this position), built bit by bit
        for delta in range(1, 1024):
            low = (delta & -delta).bit_length() - 1
            effect[delta] = effect[delta & (delta - 1)] ^ basis[low]
            if effect[delta] == target:
                return position
    return None


def _polymod(values: Sequence[int]) -> int:
    return int(rs1024._polymod(values))


def _other_set(identifier: int, expected: int, earlier: Sequence[KnownSet]) -> str:
    words = set_words(identifier)
    for known in earlier:
        if known.identifier == identifier and known.started_at is not None:
            return (f"(beginning {words!r}) is from an earlier detox, started "
                    f"{known.started_at:%Y-%m-%d}; this detox's shares begin {set_words(expected)!r}")
    return (f"(beginning {words!r}) is from another detox; this detox's shares begin "
            f"{set_words(expected)!r}")
