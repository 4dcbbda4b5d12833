"""detoxd's extension for Firefox: the XPI package and the policies that force-install it.

The XPI is a plain zip of the extension (its Firefox manifest first), unsigned; it goes under
``<policy root>/var/lib/detoxd/browser/firefox/detoxd.xpi`` (world-readable: browsers run as
users), written only when its bytes change (the zip is deterministic). The policies are
:func:`detoxd.core.firefoxext.firefox_specs`, applied and removed by
:class:`~detoxd.service.targets.browser.policyfiles.BrowserPolicies` with the rest.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

from detoxd.core import firefoxext
from detoxd.core.policies import PolicySpec
from detoxd.durable import replace_file

FILE_MODE = 0o644
DIR_MODE = 0o755
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def xpi(files: Mapping[str, bytes]) -> bytes:
    """The XPI of ``files`` (name -> bytes, ``manifest.json`` among them): the same bytes each time."""
    if "manifest.json" not in files:
        raise ValueError("an XPI needs a manifest.json")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("manifest.json", *sorted(set(files) - {"manifest.json"})):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return buffer.getvalue()


class FirefoxExtension:
    """The XPI under ``root`` and the policies that install it (with the host launcher's path)."""

    def __init__(self, root: Path, launcher: Path) -> None:
        self.root = Path(root)
        self.launcher = Path(launcher)

    @property
    def package(self) -> Path:
        return self.root / firefoxext.FIREFOX_DIR / firefoxext.XPI_NAME

    def specs(self) -> tuple[PolicySpec, ...]:
        return firefoxext.firefox_specs(self.package.as_uri(), str(self.launcher))

    def write(self, files: Mapping[str, bytes]) -> bool:
        """Write the XPI of ``files`` when missing or different; whether it was written. Raises OSError."""
        data = xpi(files)
        try:
            same = self.package.read_bytes() == data and (os.stat(self.package).st_mode & 0o7777) == FILE_MODE
        except OSError:
            same = False
        if same:
            return False
        missing = [parent for parent in (self.package.parent, *self.package.parent.parents)
                   if not parent.exists()]
        for parent in reversed(missing):
            parent.mkdir(exist_ok=True)
            parent.chmod(DIR_MODE)  # browsers run as users: the path must stay readable
        replace_file(self.package, data, mode=FILE_MODE)
        return True
