"""detoxd.durable: the one crash-safe writer, for root's files and a user's."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from detoxd.durable import TEMP_SUFFIX, remove_file, replace_file
from tests.otheruser import NOBODY, user_python


def test_a_replaced_file_keeps_its_owner_and_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text("old")
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o640)
    replace_file(path, b"new", mode=0o600, keep_existing_mode=True)
    info = path.stat()
    assert path.read_bytes() == b"new"
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (NOBODY, NOBODY, 0o640)
    assert [p.name for p in tmp_path.iterdir()] == ["policy.json"]
    assert not any(p.name.endswith(TEMP_SUFFIX) for p in tmp_path.iterdir())


def test_a_user_replaces_their_file_whose_group_they_are_not_in() -> None:
    """The tray rewrites the user's mako config: the user may not hand the new file root's
    group, and the write must not fail for that (it did with a plain fchown)."""
    directory = Path(tempfile.mkdtemp(prefix="detoxd-durable-"))
    try:
        directory.chmod(0o755)
        os.chown(directory, NOBODY, NOBODY)
        path = directory / "config"
        path.write_text("old\n")
        os.chown(path, NOBODY, 0)
        path.chmod(0o640)
        script = ("import sys; from pathlib import Path; from detoxd.durable import replace_file; "
                  "replace_file(Path(sys.argv[1]), b'new\\n', mode=0o644, keep_existing_mode=True)")
        result = subprocess.run([user_python(), "-c", script, str(path)], user=NOBODY, group=NOBODY,
                                extra_groups=[], capture_output=True, text=True, timeout=60, cwd="/",
                                check=False)
        assert result.returncode == 0, result.stderr
        info = path.stat()
        assert path.read_text() == "new\n"
        assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (NOBODY, NOBODY, 0o640)
    finally:
        shutil.rmtree(directory)


def test_remove_file_says_whether_there_was_one(tmp_path: Path) -> None:
    path = tmp_path / "detoxd.conf"
    path.write_text("x")
    assert remove_file(path) is True
    assert not path.exists()
    assert remove_file(path) is False
