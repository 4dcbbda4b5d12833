"""Which code a root unit would run, and who can change it: real venvs, files and symlinks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from detoxd import codetrust
from detoxd.codetrust import check_executable, traversed, unsafe_chain, unsafe_trees

NOBODY = 65534
# Files made by the test belong to whoever runs it; root's files are trusted as always.
ME = frozenset({0, os.getuid()})
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
SYSTEM_PYTHON = Path("/usr/bin/python3")


def make_venv(path: Path) -> Path:
    """A real venv (no pip: fast) with a detoxd-like entry point script."""
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(path)], check=True)
    script = path / "bin/detoxd"
    script.write_text(f"#!{path}/bin/python\nimport sys\n")
    script.chmod(0o755)
    return script


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


@pytest.fixture
def private_tmp(tmp_path: Path) -> Path:
    """tmp_path's parents may be group-writable on some machines; start from a clean 0755."""
    tmp_path.chmod(0o755)
    return tmp_path


def test_traversed_follows_every_symlink_through_its_own_directory(private_tmp: Path) -> None:
    (private_tmp / "real").mkdir()
    (private_tmp / "real/detoxd").write_text("")
    (private_tmp / "links").mkdir()
    (private_tmp / "links/hop").symlink_to(private_tmp / "real")
    (private_tmp / "entry").symlink_to("links/hop/detoxd")
    steps = traversed(private_tmp / "entry")
    for expected in ("entry", "links", "links/hop", "real", "real/detoxd"):
        assert private_tmp / expected in steps, expected


def test_a_group_or_world_writable_directory_on_the_way_is_unsafe(private_tmp: Path) -> None:
    target = private_tmp / "a/b/code.py"
    target.parent.mkdir(parents=True)
    target.write_text("")
    assert list(unsafe_chain(target, ME)) == []
    (private_tmp / "a").chmod(0o777)
    problems = list(unsafe_chain(target, ME))
    assert [(p.path, p.reason) for p in problems] == [(private_tmp / "a", "writable by everyone")]


def test_a_sticky_world_writable_parent_is_safe_but_not_as_a_code_directory(private_tmp: Path) -> None:
    shared = private_tmp / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "mine").mkdir()
    assert list(unsafe_chain(shared / "mine", ME)) == []
    assert [p.reason for p in unsafe_chain(shared, ME)] == ["writable by everyone"]


def test_a_writable_file_deep_in_a_code_tree_is_found(private_tmp: Path) -> None:
    deep = private_tmp / "site/pkg/sub/mod.py"
    deep.parent.mkdir(parents=True)
    deep.write_text("")
    assert unsafe_trees([private_tmp / "site"], ME) == []
    deep.chmod(0o666)
    assert [p.path for p in unsafe_trees([private_tmp / "site"], ME)] == [deep]


@as_root
def test_a_file_owned_by_another_user_is_unsafe(private_tmp: Path) -> None:
    code = private_tmp / "code.py"
    code.write_text("")
    os.chown(code, NOBODY, 0)
    problems = list(unsafe_chain(code, ME))
    assert len(problems) == 1
    assert problems[0].reason.startswith("owned by ") and f"uid {NOBODY}" in problems[0].reason


def test_a_root_owned_venv_is_accepted_and_its_code_dirs_listed(private_tmp: Path) -> None:
    script = make_venv(private_tmp / "venv")
    layout, unsafe = check_executable(script, trusted_uids=ME)
    assert unsafe == []
    assert layout is not None
    assert site_packages(private_tmp / "venv") in layout.code_dirs
    assert Path(sys.base_prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}") \
        in layout.code_dirs or any(str(d).startswith("/usr/lib/python3") for d in layout.code_dirs)


def test_a_writable_script_stops_before_its_interpreter_is_run(private_tmp: Path) -> None:
    script = make_venv(private_tmp / "venv")
    script.chmod(0o777)
    layout, unsafe = check_executable(script, trusted_uids=ME)
    assert layout is None
    assert [p.path for p in unsafe] == [script]


def test_a_pth_line_pointing_at_a_writable_checkout_is_unsafe(private_tmp: Path) -> None:
    """What `pip install -e` does with a plain .pth line (setuptools' "compat" mode)."""
    script = make_venv(private_tmp / "venv")
    checkout = private_tmp / "checkout"
    (checkout / "detoxd").mkdir(parents=True)
    (checkout / "detoxd/__init__.py").write_text("")
    (site_packages(private_tmp / "venv") / "__editable__.detoxd.pth").write_text(f"{checkout}\n")
    assert check_executable(script, trusted_uids=ME)[1] == []
    (checkout / "detoxd").chmod(0o775)
    os.chown(checkout / "detoxd", -1, 4242)  # a group that is not root's
    unsafe = check_executable(script, trusted_uids=ME)[1]
    assert [(p.path, p.reason) for p in unsafe] == [(checkout / "detoxd", "writable by group gid 4242")]


def test_a_setuptools_style_mapping_to_a_writable_checkout_is_unsafe(private_tmp: Path) -> None:
    """Stand-in for setuptools' editable finder (``__editable___*_finder.py``): a meta-path
    finder class whose module has a MAPPING of package names to checkout directories, as
    setuptools writes it; only MAPPING and the finder's presence on sys.meta_path matter."""
    script = make_venv(private_tmp / "venv")
    checkout = private_tmp / "elsewhere/detoxd"
    checkout.mkdir(parents=True)
    (checkout / "__init__.py").write_text("")
    site = site_packages(private_tmp / "venv")
    (site / "__editable___detoxd_finder.py").write_text(
        "import importlib.util, sys\n"
        f"MAPPING = {{'detoxd': {str(checkout)!r}}}\n"
        "class _EditableFinder:\n"
        "    @classmethod\n"
        "    def find_spec(cls, fullname, path=None, target=None):\n"
        "        if fullname in MAPPING:\n"
        "            return importlib.util.spec_from_file_location(\n"
        "                fullname, MAPPING[fullname] + '/__init__.py',\n"
        "                submodule_search_locations=[MAPPING[fullname]])\n"
        "        return None\n"
        "def install():\n"
        "    sys.meta_path.append(_EditableFinder)\n"
    )
    (site / "__editable__.detoxd.pth").write_text("import __editable___detoxd_finder; "
                                                  "__editable___detoxd_finder.install()\n")
    layout, unsafe = check_executable(script, trusted_uids=ME)
    assert unsafe == [] and layout is not None
    assert checkout in layout.code_dirs
    (checkout / "__init__.py").chmod(0o666)
    assert [p.path for p in check_executable(script, trusted_uids=ME)[1]] == [checkout / "__init__.py"]


def test_a_pth_file_in_an_unsafe_site_dir_is_never_run(private_tmp: Path) -> None:
    script = make_venv(private_tmp / "venv")
    site = site_packages(private_tmp / "venv")
    witness = private_tmp / "ran"
    (site / "evil.pth").write_text(f"import pathlib; pathlib.Path({str(witness)!r}).touch()\n")
    (site / "evil.pth").chmod(0o666)
    layout, unsafe = check_executable(script, trusted_uids=ME)
    assert layout is None and [p.path for p in unsafe] == [site / "evil.pth"]
    assert not witness.exists()


def test_an_env_shebang_is_refused(private_tmp: Path) -> None:
    script = private_tmp / "detoxd"
    script.write_text("#!/usr/bin/env python3\n")
    with pytest.raises(codetrust.CodeTrustError, match="depends on PATH"):
        check_executable(script, trusted_uids=ME)
