"""detoxd's extension for Chromium and Google Chrome: key, CRX3 package, update.xml, host launcher.

The per-machine RSA key is made once, 0600, in the daemon's state directory; the extension's id
is that key's (:func:`detoxd.core.browserext.extension_id`), so it stays the same across restarts
and upgrades. The package, ``update.xml`` and the native host's launcher go under
``<policy root>/var/lib/detoxd/browser/`` (world-readable: browsers run as users), each written
only when its bytes change (the zip and the PKCS#1 v1.5 signature are deterministic). The policies
that force-install the extension, switch incognito and guest windows off and register the host are
:func:`detoxd.core.browserext.chromium_specs`, applied and removed by
:class:`~detoxd.service.targets.browser.policyfiles.BrowserPolicies` with the rest.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sys
import zipfile
from importlib import resources
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from detoxd import __version__
from detoxd.core import browserext
from detoxd.core.policies import PolicySpec
from detoxd.durable import replace_file
from detoxd.service import state_store

log = logging.getLogger(__name__)

KEY_NAME = "browser-extension-key.pem"
# Chromium updates an installed extension only to a higher version: the package's version is
# detoxd's (three numbers) and a build number that goes up each time the extension's files change.
BUILD_NAME = "browser-extension-build.json"
KEY_BITS = 2048
DIR_MODE = 0o755
FILE_MODE = 0o644
LAUNCHER_MODE = 0o755
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def source_files() -> dict[str, bytes]:
    """The extension's source files, as packaged with detoxd."""
    source = resources.files("detoxd.data").joinpath("browser-extension")
    return {name: source.joinpath(name).read_bytes() for name in browserext.SOURCE_FILES}


def extension_zip(family: str, version: str = __version__) -> bytes:
    """The extension for ``family`` as a zip with its manifest (byte for byte the same each time)."""
    files = {"manifest.json": json.dumps(browserext.manifest(family, version), indent=2).encode() + b"\n",
             **source_files()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return buffer.getvalue()


def load_or_make_key(path: Path, *, create: bool = True) -> rsa.RSAPrivateKey | None:
    """The key in ``path``; made (0600, never over an existing file) when missing and ``create``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:  # made meanwhile: that one is the key
            return load_or_make_key(path, create=False)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(pem)
            stream.flush()
            os.fsync(stream.fileno())
        return key
    loaded = serialization.load_pem_private_key(data, password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA key")
    return loaded


def public_der(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def pack_crx(key: rsa.RSAPrivateKey, archive: bytes) -> bytes:
    def sign(data: bytes) -> bytes:
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return browserext.crx3(archive, public_der(key), sign)


class ChromiumExtension:
    """The extension's files under ``root`` and the policies that install it."""

    def __init__(self, state_dir: Path, root: Path, python: str = sys.executable) -> None:
        self.key_path = Path(state_dir) / KEY_NAME
        self.build_path = Path(state_dir) / BUILD_NAME
        self.root = Path(root)
        self.directory = self.root / browserext.BROWSER_DIR
        self.python = python
        self._key: rsa.RSAPrivateKey | None = None
        self._files: dict[Path, tuple[bytes, int]] | None = None

    @property
    def launcher(self) -> Path:
        return self.directory / browserext.LAUNCHER_NAME

    @property
    def crx(self) -> Path:
        return self.root / browserext.CHROMIUM_DIR / browserext.CRX_NAME

    @property
    def update_manifest(self) -> Path:
        return self.root / browserext.CHROMIUM_DIR / browserext.UPDATE_NAME

    def key(self, *, create: bool = True) -> rsa.RSAPrivateKey | None:
        if self._key is None:
            self._key = load_or_make_key(self.key_path, create=create)
        return self._key

    def extension_id(self, *, create: bool = True) -> str | None:
        key = self.key(create=create)
        return browserext.extension_id(public_der(key)) if key is not None else None

    def specs(self, *, create: bool = True) -> tuple[PolicySpec, ...]:
        """The policies (force-install, incognito and guest windows off, host manifests); () without a key and
        ``create`` false (nothing of the extension can then be in place)."""
        ext_id = self.extension_id(create=create)
        if ext_id is None:
            return ()
        return browserext.chromium_specs(ext_id, self.update_manifest.as_uri(), str(self.launcher))

    def files(self) -> dict[Path, tuple[bytes, int]]:
        """Every file to write: path -> (bytes, mode) (packed once per process)."""
        if self._files is not None:
            return self._files
        key = self.key()
        assert key is not None
        ext_id = browserext.extension_id(public_der(key))
        version = self.version()
        self._files = {
            self.launcher: (browserext.launcher_script(self.python).encode(), LAUNCHER_MODE),
            self.crx: (pack_crx(key, extension_zip("chromium", version)), FILE_MODE),
            self.update_manifest: (browserext.update_xml(ext_id, version, self.crx.as_uri()).encode(),
                                   FILE_MODE),
        }
        return self._files

    def version(self) -> str:
        """detoxd's version and the build number of these files (raised when they changed)."""
        digest = hashlib.sha256(extension_zip("chromium", "0")).hexdigest()
        try:
            known = state_store.read_json(self.build_path)
            build = int(known["build"]) if known["hash"] == digest else int(known["build"]) + 1
        except FileNotFoundError:
            known, build = None, 1
        except (OSError, state_store.StateFileError, ValueError, KeyError, TypeError) as error:
            log.warning("unreadable %s (%s): the build number starts again", self.build_path, error)
            known, build = None, 1
        if known is None or known.get("hash") != digest:
            state_store.write_atomic(self.build_path, json.dumps({"hash": digest, "build": build}).encode())
        return browserext.package_version(__version__, build)

    def write(self) -> list[Path]:
        """Write the files that are missing or differ; returns those written. Raises OSError."""
        written = []
        for path, (data, mode) in self.files().items():
            _make_directories(path.parent, self.root)
            try:
                same = path.read_bytes() == data and (os.stat(path).st_mode & 0o7777) == mode
            except OSError:
                same = False
            if not same:
                replace_file(path, data, mode=mode)
                written.append(path)
        return written


def _make_directories(directory: Path, root: Path) -> None:
    """``directory`` and its missing parents, 0755 (users' browsers read them); an existing
    directory below ``root`` that users cannot pass through is made passable (``o+x`` only)."""
    missing = [parent for parent in (directory, *directory.parents) if not parent.exists()]
    for parent in reversed(missing):
        parent.mkdir(exist_ok=True)
        parent.chmod(DIR_MODE)
    for parent in (directory, *directory.parents):
        if parent == root or root not in parent.parents:
            break
        mode = parent.stat().st_mode & 0o7777
        if not mode & 0o001:
            log.info("%s: made passable for the users' browsers (o+x)", parent)
            parent.chmod(mode | 0o011)
