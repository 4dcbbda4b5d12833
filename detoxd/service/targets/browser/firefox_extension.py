"""detoxd's extension for Firefox: the XPI package and the policies that force-install it.

The XPI is the zip of the extension with its Firefox manifest, unsigned; it goes under
``<policy root>/var/lib/detoxd/browser/firefox/detoxd.xpi`` (world-readable: browsers run as
users), written only when its bytes change. The policies are
:func:`detoxd.core.firefoxext.firefox_specs`, applied and removed by
:class:`~detoxd.service.targets.browser.policyfiles.BrowserPolicies` with the rest.
"""

from __future__ import annotations

import os
from pathlib import Path

from detoxd.core import firefoxext
from detoxd.core.policies import PolicySpec
from detoxd.durable import replace_file

FILE_MODE = 0o644
DIR_MODE = 0o755


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

    def write(self, data: bytes) -> bool:
        """Write the XPI (``data``: the extension's zip) when missing or different; whether it was
        written. Raises OSError."""
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
