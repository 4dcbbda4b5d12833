# flake8: noqa

from .cipher import decrypt, encrypt
from .shamir import (
    EncryptedMasterSecret,
    combine_mnemonics,
    decode_mnemonics,
    generate_mnemonics,
    recover_ems,
    split_ems,
)
from .share import Share
from .utils import MnemonicError

__all__ = [
    "encrypt",
    "decrypt",
    "combine_mnemonics",
    "decode_mnemonics",
    "generate_mnemonics",
    "split_ems",
    "recover_ems",
    "EncryptedMasterSecret",
    "MnemonicError",
    "Share",
]
