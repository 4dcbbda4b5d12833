"""The peer lock's key: real SLIP-39 shares (shamir-mnemonic), real scrypt, typed-share diagnostics.

scrypt runs with N=2**14 here (the smallest the verifier accepts) to keep the suite fast; the
default parameters are checked separately.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime

import pytest
import shamir_mnemonic

from detoxd.core import peerkey
from detoxd.core.peerkey import KdfParams, KnownSet, ShareProblem

FAST = KdfParams(n=2**14)
HOLDERS = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Tim Berners-Lee")
SECRET = bytes(range(16))


@pytest.fixture(scope="module")
def share_set() -> peerkey.ShareSet:
    return peerkey.split(SECRET, HOLDERS, 3, identifier=1234, salt=b"s" * 16, kdf=FAST)


def read(share_set: peerkey.ShareSet, text: str, number: int = 1, **extra: object) -> peerkey.Share:
    verifier = share_set.verifier
    return peerkey.read_share(text, number=number, verifier_set=verifier.share_set,
                              needed=verifier.needed, holders=verifier.holders, **extra)  # type: ignore[arg-type]


def test_every_three_of_five_recover_the_secret_and_satisfy_the_verifier(share_set: peerkey.ShareSet) -> None:
    verifier = share_set.verifier
    combinations = list(itertools.combinations(range(5), 3))
    assert len(combinations) == 10
    for chosen in combinations:
        shares = [read(share_set, share_set.shares[i], n) for n, i in enumerate(chosen, 1)]
        secret = peerkey.combine(shares, HOLDERS)
        assert secret == SECRET
        assert peerkey.accepts(verifier, peerkey.proof(secret, verifier.salt, verifier.kdf))


def test_two_shares_are_not_enough(share_set: peerkey.ShareSet) -> None:
    shares = [read(share_set, share_set.shares[0]), read(share_set, share_set.shares[3], 2)]
    with pytest.raises(ShareProblem, match="do not combine"):
        peerkey.combine(shares, HOLDERS)


def test_shares_are_standard_slip39_20_words(share_set: peerkey.ShareSet) -> None:
    assert len(share_set.shares) == 5
    for share in share_set.shares:
        assert len(share.split()) == peerkey.SHARE_WORDS
        assert share.startswith(peerkey.set_words(1234) + " ")
    # Any SLIP-39 tool recovers the secret: here the library's own top-level API.
    assert shamir_mnemonic.combine_mnemonics(list(share_set.shares[2:])) == SECRET


def test_wrong_proof_and_other_salt_are_refused(share_set: peerkey.ShareSet) -> None:
    verifier = share_set.verifier
    assert not peerkey.accepts(verifier, peerkey.proof(bytes(16), verifier.salt, FAST))
    assert not peerkey.accepts(verifier, peerkey.proof(SECRET, b"t" * 16, FAST))
    assert not peerkey.accepts(verifier, b"\x00" * 32)


def test_the_verifier_holds_neither_secret_nor_proof(share_set: peerkey.ShareSet) -> None:
    verifier = share_set.verifier
    proof = peerkey.proof(SECRET, verifier.salt, FAST)
    stored = repr(peerkey.verifier_to_json(verifier))
    for value in (SECRET.hex(), proof.hex(), *share_set.shares):
        assert value not in stored
    assert peerkey.verifier_from_json(peerkey.verifier_to_json(verifier)) == verifier


@pytest.mark.parametrize("position", range(peerkey.SHARE_WORDS))
def test_one_mistyped_word_is_named_wherever_it_is(share_set: peerkey.ShareSet, position: int) -> None:
    words = share_set.shares[1].split()
    words[position] = "acid" if words[position] != "acid" else "acne"  # a real word, wrong here
    with pytest.raises(ShareProblem) as problem:
        read(share_set, " ".join(words), 2)
    assert str(problem.value).startswith(f"share 2: word {position + 1} ('acid') is wrong") or \
        str(problem.value).startswith(f"share 2: word {position + 1} ('acne') is wrong")


def test_a_word_not_in_the_list_is_named(share_set: peerkey.ShareSet) -> None:
    words = share_set.shares[0].split()
    words[6] = "pizzza"
    with pytest.raises(ShareProblem, match=r"share 3: word 7 \('pizzza'\) is not in the SLIP-39 word list"):
        read(share_set, " ".join(words), 3)


def test_swapped_words_are_named(share_set: peerkey.ShareSet) -> None:
    words = share_set.shares[0].split()
    words[9], words[10] = words[10], words[9]
    with pytest.raises(ShareProblem, match="words 10 and 11 are swapped"):
        read(share_set, " ".join(words))


def test_a_missing_word_is_counted(share_set: peerkey.ShareSet) -> None:
    with pytest.raises(ShareProblem, match="share 1 has 19 words; a share has 20"):
        read(share_set, " ".join(share_set.shares[0].split()[:-1]))


def test_card_numbering_case_and_four_letter_prefixes_are_accepted(share_set: peerkey.ShareSet) -> None:
    words = share_set.shares[4].split()
    typed = "  ".join(f"{n}. {word[:4].upper()}" for n, word in enumerate(words, 1))
    share = read(share_set, typed)
    assert share.mnemonic == share_set.shares[4]
    assert peerkey.holder_of(share, HOLDERS) == "Tim Berners-Lee"


def test_the_same_peer_twice_is_named(share_set: peerkey.ShareSet) -> None:
    share = read(share_set, share_set.shares[2])
    with pytest.raises(ShareProblem, match="share 3 is Alan Turing's again"):
        peerkey.combine([share, read(share_set, share_set.shares[0]), share], HOLDERS)


def test_a_share_of_an_earlier_detox_is_recognised_and_dated(share_set: peerkey.ShareSet) -> None:
    earlier = peerkey.split(os.urandom(16), HOLDERS, 3, identifier=999, salt=b"e" * 16, kdf=FAST)
    started = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    with pytest.raises(ShareProblem) as problem:
        read(share_set, earlier.shares[0], 2, earlier=[KnownSet(999, started)])
    message = str(problem.value)
    assert "from an earlier detox, started 2026-11-02" in message
    assert peerkey.set_words(999) in message and peerkey.set_words(1234) in message
    with pytest.raises(ShareProblem, match="is from another detox"):
        read(share_set, earlier.shares[0], 2)


def test_a_share_with_another_threshold_is_not_one_of_ours(share_set: peerkey.ShareSet) -> None:
    other = peerkey.split(os.urandom(16), HOLDERS, 2, identifier=1234, salt=b"e" * 16, kdf=FAST)
    with pytest.raises(ShareProblem, match="is not one of them"):
        read(share_set, other.shares[0])


def test_malformed_verifiers_are_refused(share_set: peerkey.ShareSet) -> None:
    good = peerkey.verifier_to_json(share_set.verifier)
    for change, message in [({"n": 2**10}, "power of 2"), ({"n": 3 * 2**14}, "power of 2"),
                            ({"salt": "00"}, "salt"), ({"needed": 6}, "peers needed"),
                            ({"holders": ["a", "b"]}, "peers holding"), ({"kdf": "md5"}, "scrypt"),
                            ({"n": "16384"}, "wrong types"), ({"digest": "zz"}, "malformed")]:
        with pytest.raises(ValueError, match=message):
            peerkey.verifier_from_json({**good, **change})


def test_default_scrypt_parameters_are_owasp_minimum() -> None:
    assert (peerkey.DEFAULT_KDF.n, peerkey.DEFAULT_KDF.r, peerkey.DEFAULT_KDF.p) == (2**17, 8, 1)
    assert peerkey.DEFAULT_KDF.problem() is None
    assert peerkey.DEFAULT_KDF.memory_bytes == 128 * 1024 * 1024


def test_the_last_two_words_swapped_and_two_wrong_words_are_told_apart(share_set: peerkey.ShareSet) -> None:
    words = share_set.shares[0].split()
    words[18], words[19] = words[19], words[18]
    with pytest.raises(ShareProblem) as problem:
        read(share_set, " ".join(words))
    assert str(problem.value) == ("share 1: words 19 and 20 are swapped; compare it with the card word "
                                  "by word")
    words = share_set.shares[0].split()
    for position in (3, 12):
        words[position] = "acid" if words[position] != "acid" else "acne"
    with pytest.raises(ShareProblem) as problem:
        read(share_set, " ".join(words))
    assert str(problem.value) == ("share 1: the checksum fails: more than one word is wrong; compare it "
                                  "with the card word by word")
