"""install()/uninstall() into a scratch root, checked with the real ``systemctl --root``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detoxd import install as installer
from detoxd.install import (
    Bundle,
    InstallError,
    UnsafeCode,
    find_executable,
    home_paths_needed,
    install,
    remove_files,
    render,
    uninstall,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = {
    "detoxd.yaml": "# detoxd settings (stand-in)\ndays: 14\n",
    "blocklist.yaml": "# blocked domains (stand-in)\npresets: [social]\n",
}

# The test's own files belong to whoever runs it, or to the checkout's owner (scripts/test runs
# itself with sudo from a sudoer's ~/detoxd); root's are trusted as always.
ME = frozenset({0, os.getuid(), REPO.stat().st_uid})

pytestmark = pytest.mark.skipif(shutil.which("systemctl") is None, reason="needs systemctl")


@pytest.fixture
def bundle() -> Bundle:
    return Bundle(
        system_unit=(REPO / "systemd/detoxd.service").read_text(),
        tray_unit=(REPO / "systemd/detoxd-tray.service").read_text(),
        tray_autostart=(REPO / "systemd/detoxd-tray.desktop").read_text(),
        config=DEFAULT_CONFIG,
    )


@pytest.fixture
def executable() -> Path:
    path = Path(sys.executable).parent / "detoxd"
    assert path.is_file(), "install the package (pip install -e .) to get the entry point"
    return path


def systemctl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemctl", f"--root={root}", *args], capture_output=True, text=True, check=False
    )


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under root: (inode, mtime in ns, content or link target)."""
    entries = {}
    for path in sorted(root.rglob("*")):
        status = path.lstat()
        if path.is_symlink():
            content = "-> " + os.readlink(path)
        elif path.is_file():
            content = path.read_text()
        else:
            content = "<dir>"
        entries[str(path.relative_to(root))] = (status.st_ino, status.st_mtime_ns, content)
    return entries


def test_install_places_files_and_enables_units(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    lines = install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)

    unit = (tmp_path / "etc/systemd/system/detoxd.service").read_text()
    assert f"ExecStart={executable} run\n" in unit
    assert f"ExecReload={executable} reload\n" in unit
    tray = (tmp_path / "etc/systemd/user/detoxd-tray.service").read_text()
    assert f"ExecStart={executable} tray\n" in tray
    desktop = (tmp_path / "etc/xdg/autostart/detoxd-tray.desktop").read_text()
    assert f"Exec={executable} tray\n" in desktop
    for name, text in DEFAULT_CONFIG.items():
        assert (tmp_path / "etc/detoxd" / name).read_text() == text
    assert (tmp_path / "etc/systemd/system/detoxd.service").stat().st_mode & 0o777 == 0o644

    assert systemctl(tmp_path, "is-enabled", "detoxd.service").stdout.strip() == "enabled"
    tray_state = systemctl(tmp_path, "--global", "is-enabled", "detoxd-tray.service")
    assert tray_state.stdout.strip() == "enabled"
    assert "wrote /etc/systemd/system/detoxd.service" in lines
    assert "enabled detoxd.service: it starts at boot" in lines
    cutter = (tmp_path / "etc/systemd/system/detoxd-cutter.service").read_text()
    assert f"ExecStart={executable} cut\n" in cutter
    assert systemctl(tmp_path, "is-enabled", "detoxd-cutter.path").stdout.strip() == "enabled"
    execwatch = (tmp_path / "etc/systemd/system/detoxd-execwatch.service").read_text()
    assert f"ExecStart={executable} execwatch\n" in execwatch
    assert systemctl(tmp_path, "is-enabled", "detoxd-execwatch.service").stdout.strip() == "enabled"
    assert "enabled detoxd-execwatch.service: blocked apps are closed as they start" in lines


def test_second_install_changes_nothing_and_says_so(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    before = snapshot(tmp_path)
    lines = install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    assert snapshot(tmp_path) == before
    assert lines == [f"nothing changed: detoxd is already installed in {tmp_path}"]


def test_existing_config_is_never_overwritten(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    edited = tmp_path / "etc/detoxd/detoxd.yaml"
    edited.parent.mkdir(parents=True)
    edited.write_text("days: 14\n# my own notes\n")
    lines = install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    assert edited.read_text() == "days: 14\n# my own notes\n"
    assert (tmp_path / "etc/detoxd/blocklist.yaml").read_text() == DEFAULT_CONFIG["blocklist.yaml"]
    assert "wrote default /etc/detoxd/blocklist.yaml" in lines
    assert not any("detoxd.yaml" in line for line in lines)


def test_reinstall_from_another_location_rewrites_the_units(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    root = tmp_path / "root"
    install(root, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    moved = tmp_path / "opt/detoxd/bin/detoxd"
    moved.parent.mkdir(parents=True)
    shutil.copy2(executable, moved)
    lines = install(root, now=False, executable=moved, bundle=bundle, trusted_uids=ME)
    assert f"ExecStart={moved} run\n" in (root / "etc/systemd/system/detoxd.service").read_text()
    assert "wrote /etc/systemd/system/detoxd.service" in lines
    assert not any(line.startswith("enabled") for line in lines)  # already enabled


def test_now_does_not_start_anything_in_an_offline_root(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    lines = install(tmp_path, now=True, executable=executable, bundle=bundle, trusted_uids=ME)
    assert any(line.startswith("not started: --now applies only") for line in lines)


def test_failing_systemctl_is_reported(tmp_path: Path, bundle: Bundle, executable: Path) -> None:
    with pytest.raises(InstallError, match=r"enable detoxd\.service failed"):
        install(tmp_path, now=False, executable=executable, bundle=bundle, systemctl="false", trusted_uids=ME)


def test_uninstall_removes_units_and_keeps_config(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    hosts = tmp_path / "etc/hosts"
    hosts.parent.mkdir(parents=True)
    hosts.write_text("127.0.0.1 localhost\n")
    install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)

    lines = uninstall(tmp_path, purge=False)

    for relative in (
        "etc/systemd/system/detoxd.service",
        "etc/systemd/user/detoxd-tray.service",
        "etc/xdg/autostart/detoxd-tray.desktop",
    ):
        assert not (tmp_path / relative).exists(), relative
    assert not list(tmp_path.rglob("*.wants/detoxd*"))  # no dangling enablement links
    assert systemctl(tmp_path, "is-enabled", "detoxd.service").returncode != 0
    for name, text in DEFAULT_CONFIG.items():
        assert (tmp_path / "etc/detoxd" / name).read_text() == text
    assert hosts.read_text() == "127.0.0.1 localhost\n"
    assert "disabled detoxd.service" in lines
    assert "kept /etc/detoxd: your configuration (--purge removes it)" in lines


def test_uninstall_twice_says_nothing_changed(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    uninstall(tmp_path, purge=True)
    assert uninstall(tmp_path, purge=True) == [
        f"nothing changed: detoxd is not installed in {tmp_path}"
    ]


def test_purge_removes_config_and_state_but_not_hosts(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    state = tmp_path / "var/lib/detoxd/state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    hosts = tmp_path / "etc/hosts"
    hosts.write_text("127.0.0.1 localhost\n")

    lines = uninstall(tmp_path, purge=True)

    assert not (tmp_path / "etc/detoxd").exists()
    assert not (tmp_path / "var/lib/detoxd").exists()
    assert hosts.read_text() == "127.0.0.1 localhost\n"
    assert "removed /etc/detoxd" in lines
    assert "removed /var/lib/detoxd" in lines


def test_remove_files_only_touches_detoxd_files(tmp_path: Path) -> None:
    neighbour = tmp_path / "etc/systemd/system/other.service"
    neighbour.parent.mkdir(parents=True)
    neighbour.write_text("[Service]\nExecStart=/bin/true\n")
    (tmp_path / "etc/systemd/system/detoxd.service").write_text("x")
    assert remove_files(tmp_path, purge=True) == ["removed /etc/systemd/system/detoxd.service"]
    assert neighbour.exists()


@pytest.mark.parametrize(
    "path", ["/opt/my apps/detoxd", "/opt/100%/detoxd", "/opt/$HOME/detoxd", '/opt/"x"/detoxd']
)
def test_paths_that_would_need_quoting_are_refused(path: str) -> None:
    with pytest.raises(InstallError, match="unsupported path"):
        render("ExecStart=/usr/bin/detoxd run\n", Path(path))


def test_relative_executable_is_refused(tmp_path: Path, bundle: Bundle) -> None:
    with pytest.raises(InstallError, match="absolute"):
        install(tmp_path, now=False, executable=Path("detoxd"), bundle=bundle, trusted_uids=ME)


def make_script(path: Path, interpreter: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{interpreter}\nimport sys\n")
    path.chmod(0o755)
    return path


def test_home_install_exposes_its_venv(tmp_path: Path) -> None:
    """pipx as root: a venv in /root whose python links to the system interpreter."""
    home = tmp_path / "root"
    venv = home / ".local/share/pipx/venvs/detoxd"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").symlink_to(Path(sys.executable).resolve())
    script = make_script(venv / "bin/detoxd", venv / "bin/python")
    linked = home / ".local/bin/detoxd"
    linked.parent.mkdir(parents=True)
    linked.symlink_to(script)
    assert home_paths_needed(linked, home_roots=[home]) == [venv]


def test_home_install_exposes_a_home_interpreter_too(tmp_path: Path) -> None:
    """A venv built from a pyenv Python: both prefixes live in the home directory."""
    home = tmp_path / "home"
    python_prefix = home / "alice/.pyenv/versions/3.11.7"
    make_script(python_prefix / "bin/python3.11", Path("/bin/true"))
    venv = home / "alice/venvs/detoxd"
    script = make_script(venv / "bin/detoxd", python_prefix / "bin/python3.11")
    assert home_paths_needed(script, home_roots=[home]) == [python_prefix, venv]


def test_installs_outside_homes_need_no_exception(executable: Path) -> None:
    assert home_paths_needed(Path("/usr/local/bin/detoxd"), home_roots=[Path("/home")]) == []
    assert "ProtectHome=yes\n" in installer.render_system_unit(
        (REPO / "systemd/detoxd.service").read_text(), executable, []
    )


def test_find_executable_returns_the_entry_point_of_this_environment() -> None:
    found = find_executable()
    assert found.is_absolute()
    assert found.name == "detoxd"
    assert os.access(found, os.X_OK)


def test_bundle_load_reads_package_data_or_names_what_is_missing() -> None:
    data = REPO / "detoxd/data"
    if all((data / name).is_file() for name in DEFAULT_CONFIG):
        loaded = Bundle.load()
        assert loaded.system_unit == (REPO / "systemd/detoxd.service").read_text()
        assert set(loaded.config) == set(DEFAULT_CONFIG)
    else:
        with pytest.raises(InstallError, match=r"package data detoxd/data/\S+\.yaml is missing"):
            Bundle.load()


def test_install_refuses_code_that_others_can_change_and_writes_nothing(
    tmp_path: Path, bundle: Bundle
) -> None:
    """The README's old path: a venv in a clone someone else can write to."""
    venv = tmp_path / "clone/.venv"
    subprocess.run(["/usr/bin/python3",
                    "-m", "venv", "--without-pip", str(venv)], check=True)
    script = venv / "bin/detoxd"
    script.write_text(f"#!{venv}/bin/python\n")
    script.chmod(0o755)
    (tmp_path / "clone").chmod(0o777)
    root = tmp_path / "root"
    with pytest.raises(UnsafeCode) as refused:
        install(root, now=False, executable=script, bundle=bundle, trusted_uids=ME)
    message = str(refused.value)
    assert f"{tmp_path / 'clone'} (writable by everyone)" in message
    assert "become root" in message and "sudo scripts/install-system" in message
    assert not root.exists()


def test_packaged_units_are_enabled_not_copied(tmp_path: Path, bundle: Bundle, executable: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a system with the .deb: its units are in /lib/systemd, its script is /usr/bin/detoxd.
    The package is not installed here: this venv's entry point stands in for /usr/bin/detoxd (the
    real .deb is installed and checked in the booted stage, tests/booted/checks.py)."""
    monkeypatch.setattr(installer, "PACKAGED_EXECUTABLE", executable)
    packaged = tmp_path / "lib/systemd/system/detoxd.service"
    packaged.parent.mkdir(parents=True)
    packaged.write_text(bundle.system_unit)
    (packaged.parent / "detoxd-cutter.service").write_text(bundle.cutter_unit)
    (packaged.parent / "detoxd-cutter.path").write_text(bundle.cutter_path_unit)
    (packaged.parent / "detoxd-execwatch.service").write_text(bundle.execwatch_unit)
    tray = tmp_path / "usr/lib/systemd/user/detoxd-tray.service"
    tray.parent.mkdir(parents=True)
    tray.write_text(bundle.tray_unit)
    lines = install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    assert not (tmp_path / "etc/systemd/system/detoxd.service").exists()
    assert "detoxd.service, detoxd-tray.service and detoxd-cutter.path come with the Debian package " \
        "(/lib/systemd/system/detoxd.service)" in lines
    assert systemctl(tmp_path, "is-enabled", "detoxd.service").stdout.strip() == "enabled"
    assert systemctl(tmp_path, "is-enabled", "detoxd-cutter.path").stdout.strip() == "enabled"
    assert not (tmp_path / "etc/systemd/system/detoxd-cutter.path").exists()
    assert systemctl(tmp_path, "is-enabled", "detoxd-execwatch.service").stdout.strip() == "enabled"


def test_uninstall_removes_the_empty_policy_dirs_and_says_what_it_keeps(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    for relative in ("etc/firefox/policies", "etc/opt/chrome/policies/managed",
                     "etc/chromium/policies/managed"):
        (tmp_path / relative).mkdir(parents=True)  # as systemd's ConfigurationDirectory= does
    (tmp_path / "etc/chromium/master_preferences").write_text("{}")  # an installed browser's
    (tmp_path / "var/lib/detoxd").mkdir(parents=True)
    lines = uninstall(tmp_path, purge=False)
    assert not (tmp_path / "etc/firefox").exists()
    assert not (tmp_path / "etc/opt/chrome").exists() and (tmp_path / "etc/opt").is_dir()
    assert not (tmp_path / "etc/chromium/policies").exists()
    assert (tmp_path / "etc/chromium/master_preferences").exists()
    assert "removed empty /etc/firefox/policies" in lines
    assert "removed empty /etc/opt/chrome" in lines
    assert "kept /var/lib/detoxd: the ended detox's state (--purge removes it)" in lines


def test_household_units_and_their_user_are_installed_not_enabled(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    lines = install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)

    for name in installer.NETWORK_UNITS:
        text = (tmp_path / "etc/systemd/system" / name).read_text()
        assert f"ExecStart={executable} netagent --engines " in text, name
        assert systemctl(tmp_path, "is-enabled", name).stdout.strip() == "disabled", name
    assert "LoadCredential=detoxd:/etc/detoxd\n" in (
        tmp_path / "etc/systemd/system/detoxd-network.service").read_text()
    sysusers = (tmp_path / "etc/sysusers.d/detoxd.conf").read_text()
    assert sysusers == (REPO / "systemd/detoxd-network.sysusers").read_text()
    if shutil.which("systemd-sysusers", path="/usr/bin:/bin:/usr/sbin:/sbin"):
        # systemd-sysusers --root made the user in the scratch root's own passwd.
        passwd = (tmp_path / "etc/passwd").read_text().splitlines()
        for user in ("detoxd-network", "detoxd-mail"):
            assert any(line.startswith(f"{user}:") and line.endswith(":/usr/sbin/nologin")
                       for line in passwd), passwd
    assert any("installed, not enabled" in line and "detoxd-network-dnsmasq.service" in line
               for line in lines), lines
    mail = (tmp_path / "etc/systemd/system" / installer.MAIL_UNIT).read_text()
    assert f"ExecStart={executable} mail-send\n" in mail
    assert systemctl(tmp_path, "is-enabled", installer.MAIL_UNIT).stdout.strip() == "disabled"
    assert any(line.startswith(f"{installer.MAIL_UNIT}: installed, not enabled") for line in lines), lines

    removed = uninstall(tmp_path, purge=False)
    for relative in installer.OPTIONAL_UNIT_PATHS:
        assert not (tmp_path / relative).exists()
    assert not (tmp_path / "etc/sysusers.d/detoxd.conf").exists()
    assert any("kept the system users detoxd-network and detoxd-mail" in line for line in removed), removed


def test_uninstall_disables_an_enabled_household_unit(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    assert systemctl(tmp_path, "enable", "detoxd-network-dnsmasq.service").returncode == 0

    lines = uninstall(tmp_path, purge=False)

    assert "disabled detoxd-network-dnsmasq.service" in lines
    assert not (tmp_path / "etc/systemd/system/multi-user.target.wants/"
                "detoxd-network-dnsmasq.service").exists()


def test_firefoxs_native_host_directory_is_made_and_removed_again_when_empty(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    host_dir = tmp_path / "usr/lib/mozilla/native-messaging-hosts"
    lines = install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    assert host_dir.is_dir() and (host_dir.stat().st_mode & 0o7777) == 0o755  # ReadWritePaths= needs it
    assert any("created /usr/lib/mozilla/native-messaging-hosts" in line for line in lines), lines
    (host_dir / "org.example.other.json").write_text("{}")  # another program's host
    uninstall(tmp_path, purge=False)
    assert (host_dir / "org.example.other.json").exists()
    (host_dir / "org.example.other.json").unlink()
    install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    assert "removed empty /usr/lib/mozilla/native-messaging-hosts" in uninstall(tmp_path, purge=False)
    assert not (tmp_path / "usr/lib/mozilla").exists() and (tmp_path / "usr/lib").is_dir()


def test_uninstall_removes_the_empty_native_host_dirs_of_chromium_and_chrome(
    tmp_path: Path, bundle: Bundle, executable: Path
) -> None:
    install(tmp_path, now=False, executable=executable, bundle=bundle, trusted_uids=ME)
    for relative in ("etc/chromium/policies/managed", "etc/chromium/native-messaging-hosts",
                     "etc/opt/chrome/native-messaging-hosts"):
        (tmp_path / relative).mkdir(parents=True)  # as systemd's ConfigurationDirectory= does
    lines = uninstall(tmp_path, purge=False)
    assert not (tmp_path / "etc/chromium").exists() and not (tmp_path / "etc/opt/chrome").exists()
    assert "removed empty /etc/chromium/native-messaging-hosts" in lines
