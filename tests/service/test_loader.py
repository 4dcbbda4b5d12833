import os
import stat
from pathlib import Path

import pytest

from detoxd.core.yamlsource import ConfigError
from detoxd.service.loader import LARGE_BLOCK_WARNING, MAX_LIST_BYTES, load_config


def write(directory: Path, name: str, text: str, mode: int = 0o644) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_missing_files_mean_an_empty_blocklist(tmp_path: Path) -> None:
    loaded = load_config(tmp_path)
    assert loaded.names == frozenset()
    assert loaded.main.detox.days == 14


def test_presets_domains_lists_and_allow_combine(tmp_path: Path) -> None:
    write(tmp_path, "extra.txt", "# my list\nexample.org\n0.0.0.0 tracker.example.net # ads\n")
    write(tmp_path, "blocklist.yaml",
          "presets: [social]\ndomains: [news.ycombinator.com]\n"
          "lists: [extra.txt]\nallow: [reddit.com]\n")
    loaded = load_config(tmp_path)
    assert {"news.ycombinator.com", "www.news.ycombinator.com", "example.org",
            "tracker.example.net", "twitter.com"} <= loaded.names
    assert "reddit.com" not in loaded.names
    assert "www.reddit.com" not in loaded.names


def test_errors_from_both_files_and_a_list_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path, "detoxd.yaml", "detox:\n  days: -1\n")
    write(tmp_path, "bad.txt", "good.example\nnot a domain\n")
    write(tmp_path, "blocklist.yaml", "domains: ['a..b']\nlists: [bad.txt]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    where = sorted(f"{issue.file}:{issue.line}" for issue in caught.value.issues)
    assert where == ["bad.txt:2", "blocklist.yaml:1", "detoxd.yaml:2"]
    list_issue = next(i for i in caught.value.issues if i.file == "bad.txt")
    assert list_issue.private and list_issue.path == "lists[0]"


def test_world_writable_list_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "open.txt", "example.org\n", mode=0o666)
    write(tmp_path, "blocklist.yaml", "lists: [open.txt]\n")
    with pytest.raises(ConfigError, match="writable by other users"):
        load_config(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_list_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "theirs.txt", "example.org\n")
    os.chown(path, 65534, 65534)
    write(tmp_path, "blocklist.yaml", "lists: [theirs.txt]\n")
    with pytest.raises(ConfigError, match="owned by uid 65534"):
        load_config(tmp_path)


def test_symlinked_list_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "real.txt", "example.org\n")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    write(tmp_path, "blocklist.yaml", "lists: [link.txt]\n")
    with pytest.raises(ConfigError, match="a symbolic link"):
        load_config(tmp_path)


def test_huge_block_warns(tmp_path: Path) -> None:
    names = "".join(f"host{i}.example.com\n" for i in range(LARGE_BLOCK_WARNING + 1))
    write(tmp_path, "big.txt", names)
    write(tmp_path, "blocklist.yaml", "lists: [big.txt]\n")
    loaded = load_config(tmp_path)
    assert len(loaded.names) == LARGE_BLOCK_WARNING + 1
    assert any("slows down" in str(w) for w in loaded.warnings)


def test_shipped_default_config_is_valid() -> None:
    config_dir = Path(__file__).resolve().parents[2] / "config"
    loaded = load_config(config_dir)
    assert "www.linkedin.com" in loaded.names and "news.ycombinator.com" in loaded.names


def test_the_order_of_names_follows_the_config_in_every_process(tmp_path: Path) -> None:
    """The block lists names in the config's order, so it must not depend on hash seeds."""
    import subprocess
    import sys

    write(tmp_path, "extra.txt", "b.example\na.example\n")
    write(tmp_path, "blocklist.yaml",
          "presets: [social]\ndomains: [zz.example, aa.example]\nlists: [extra.txt]\n")
    script = ("import sys, pathlib; from detoxd.service.loader import load_config; "
              "print('\\n'.join(load_config(pathlib.Path(sys.argv[1])).order))")
    orders = {subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                             check=True, env={"PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2, 3)}
    assert len(orders) == 1
    order = orders.pop().split()
    assert order[-6:] == ["b.example", "a.example", "zz.example", "www.zz.example", "aa.example",
                          "www.aa.example"]


def test_warnings_travel_with_the_errors(tmp_path: Path) -> None:
    write(tmp_path, "blocklist.yaml", "domains:\n  - 'a..b'\n  - https://x.com/\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert [issue.line for issue in caught.value.issues] == [2]
    assert [str(w) for w in caught.value.warnings] == [
        "blocklist.yaml:3: domains[1]: warning: 'https://x.com/' is a URL; using its host 'x.com'"]


NETWORK = ("network:\n"
           "  - engine: pihole\n"
           "    url: https://pi.hole\n"
           "    password_file: pihole.secret\n")


def test_engine_password_file_must_be_private(tmp_path: Path) -> None:
    write(tmp_path, "detoxd.yaml", NETWORK)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value).startswith(
        "detoxd.yaml:4: network[0].password_file: cannot read 'pihole.secret'")
    secret = write(tmp_path, "pihole.secret", "s3cret-pass\n", mode=0o644)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    message = str(caught.value)
    assert message == ("detoxd.yaml:4: network[0].password_file: refusing 'pihole.secret': "
                       "mode 0644, must be 0600 (chmod 600 pihole.secret)")
    assert "s3cret" not in message
    secret.chmod(0o600)
    loaded = load_config(tmp_path)
    assert loaded.main.network[0].password_file == "pihole.secret"
    if os.geteuid() == 0:  # chown to another user needs root
        os.chown(secret, 65534, 65534)
        with pytest.raises(ConfigError) as caught:
            load_config(tmp_path)
        assert "network[0].password_file: refusing 'pihole.secret': owned by uid" in str(caught.value)


# ---- the config directory, the two files and every path component are checked (issue 12) ----

def _config(tmp_path: Path) -> Path:
    directory = tmp_path / "etc-detoxd"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    write(directory, "blocklist.yaml", "domains: [twitter.com]\n")
    return directory


def _error_text(directory: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(directory)
    return str(caught.value)


def test_world_writable_config_directory_is_refused(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    directory.chmod(0o777)
    assert "writable by other users" in _error_text(directory)
    directory.chmod(0o1777)  # the sticky bit does not make the config directory itself safe
    assert "writable by other users" in _error_text(directory)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_config_directory_and_files_owned_by_another_user_are_refused(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    os.chown(directory / "blocklist.yaml", 65534, 65534)
    assert "blocklist.yaml: refusing 'blocklist.yaml': owned by uid 65534" in _error_text(directory)
    os.chown(directory / "blocklist.yaml", 0, 0)
    os.chown(directory, 65534, 65534)
    assert "owned by uid 65534" in _error_text(directory)


def test_group_writable_main_file_is_refused_unless_the_group_is_root(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    path = write(directory, "detoxd.yaml", "detox: {days: 3}\n", mode=0o664)
    os.chown(path, 0, 0)
    assert load_config(directory).main.detox.days == 3
    os.chown(path, 0, 100)
    assert "writable by a group other than root" in _error_text(directory)


@pytest.mark.parametrize("name", ["blocklist.yaml", "detoxd.yaml"])
def test_main_files_may_not_be_symlinks_even_to_root_files(tmp_path: Path, name: str) -> None:
    directory = _config(tmp_path)
    secret = write(tmp_path, "secret.yaml", "password: hunter2\napi_key: abc\n", mode=0o600)
    (directory / name).unlink(missing_ok=True)
    (directory / name).symlink_to(secret)
    text = _error_text(directory)
    assert "a symbolic link" in text
    assert "password" not in text and "hunter2" not in text and "api_key" not in text


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_fifo_device_or_directory_as_config_file_is_refused_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    directory = _config(tmp_path)
    path = directory / "detoxd.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes: opening it for reading would block forever
    elif kind == "device":
        os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero: never ends
    else:
        path.mkdir()
    assert "detoxd.yaml: refusing 'detoxd.yaml': not a regular file" in _error_text(directory)


def test_list_through_a_symlinked_directory_is_refused_and_never_quoted(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    write(private, "shadow", "root:$6$secrethash:19000:0:99999:7:::\n", mode=0o600)
    (directory / "etcdir").symlink_to(private)
    write(directory, "blocklist.yaml", "lists: [etcdir/shadow]\n")
    text = _error_text(directory)
    assert "refusing 'etcdir/shadow': a symbolic link" in text
    assert "secrethash" not in text


def test_list_path_with_dotdot_is_refused(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    write(tmp_path, "outside.txt", "example.org\n")
    write(directory, "blocklist.yaml", "lists: [../outside.txt]\n")
    assert "'..' is not allowed" in _error_text(directory)


def test_absolute_list_outside_the_config_directory_is_read_when_trusted(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    outside = write(tmp_path, "outside.txt", "example.org\n")
    write(directory, "blocklist.yaml", f"lists: [{outside}]\n")
    assert "example.org" in load_config(directory).names
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o777)
    exposed = write(tmp_path / "open", "list.txt", "example.org\n")
    write(directory, "blocklist.yaml", f"lists: [{exposed}]\n")
    assert "writable by other users" in _error_text(directory)


def test_config_directory_reached_through_a_root_owned_symlink_is_followed(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    link = tmp_path / "link-to-config"
    link.symlink_to(directory)
    assert "twitter.com" in load_config(link).names
    relative = tmp_path / "relative-link"
    relative.symlink_to("etc-detoxd")
    assert "twitter.com" in load_config(relative).names


def test_issues_of_a_file_others_cannot_read_are_private(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    write(directory, "blocklist.yaml", "secret_key: value\n", mode=0o600)
    with pytest.raises(ConfigError) as caught:
        load_config(directory)
    (issue,) = caught.value.issues
    assert issue.private and "secret_key" not in str(issue.redacted())
    write(directory, "blocklist.yaml", "secret_key: value\n", mode=0o644)
    with pytest.raises(ConfigError) as caught:
        load_config(directory)
    assert not caught.value.issues[0].private


def test_huge_list_of_invalid_names_stops_early_and_says_how_many_more(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    write(directory, "junk.txt", "".join(f"bad..{number}.example\n" for number in range(200_000)))
    write(directory, "blocklist.yaml", "lists: [junk.txt]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(directory)
    error = caught.value
    assert len(error.issues) <= 102
    assert error.issues[-1].message.startswith("and ")
    assert "more" in error.issues[-1].message


def test_list_larger_than_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    directory = _config(tmp_path)
    with (directory / "big.txt").open("wb") as handle:
        handle.truncate(MAX_LIST_BYTES + 1)  # sparse: costs no disk
    write(directory, "blocklist.yaml", "lists: [big.txt]\n")
    assert "larger than 64 MiB" in _error_text(directory)


@pytest.mark.parametrize("text", [
    "domains: [a.example.com]\n\x01\n", "domains: [a.example.com]\x00\n", "domains: [\x1b]\n",
    "domains: [\x7f]\n", "domains: ['\ufffe']\n", "domains: &a [*a]\n", "[" * 5000,
    "domains: [2026-13-45]\n", "detox: {days: " + "9" * 5000 + "}\n",
])
def test_hostile_yaml_is_a_config_error_with_file_and_line(tmp_path: Path, text: str) -> None:
    directory = _config(tmp_path)
    (directory / "blocklist.yaml").write_bytes(text.encode("utf-8", "surrogatepass"))
    with pytest.raises(ConfigError) as caught:
        load_config(directory)
    issue = caught.value.issues[0]
    assert issue.file == "blocklist.yaml" and issue.line >= 1


def test_missing_config_directory_means_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nowhere").names == frozenset()


def test_a_list_may_be_given_by_absolute_path(tmp_path: Path) -> None:
    """Relative paths are read from the config directory; absolute ones (a shared list in
    /usr/share, say) are read where they are, under the same ownership and mode checks."""
    config, shared = tmp_path / "config", tmp_path / "shared"
    config.mkdir()
    shared.mkdir()
    absolute = write(shared, "big.txt", "far.example\n")
    write(config, "blocklist.yaml", f"lists: [{absolute}]\n")
    assert "far.example" in load_config(config).names
    absolute.chmod(0o666)
    with pytest.raises(ConfigError, match="writable"):
        load_config(config)


def test_mail_password_file_is_checked_like_the_engines_secrets(tmp_path: Path) -> None:
    write(tmp_path, "detoxd.yaml", "mail:\n  server: smtp.example.com\n  from: a@example.com\n"
                                   "  username: a@example.com\n  password_file: mail.secret\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value).startswith("detoxd.yaml:5: mail.password_file: cannot read 'mail.secret'")
    secret = write(tmp_path, "mail.secret", "hunter2-mail\n", mode=0o640)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == ("detoxd.yaml:5: mail.password_file: refusing 'mail.secret': "
                                 "mode 0640, must be 0600 (chmod 600 mail.secret)")
    secret.chmod(0o600)
    loaded = load_config(tmp_path)
    assert loaded.main.mail is not None and loaded.main.mail.password_file == "mail.secret"
    assert "hunter2" not in repr(loaded.main)


def test_a_path_of_a_site_blocked_whole_is_a_warning_that_says_why(tmp_path: Path) -> None:
    write(tmp_path, "blocklist.yaml", "presets: [professional-networking]\n"
          "paths:\n  - youtube.com/shorts\n  - linkedin.com/feed\n")
    loaded = load_config(tmp_path)
    assert loaded.blocklist.paths == ("youtube.com/shorts", "linkedin.com/feed")
    assert [(issue.line, issue.path, issue.severity) for issue in loaded.warnings] == [
        (4, "paths[1]", "warning")]
    assert loaded.warnings[0].message.startswith("'linkedin.com' is blocked whole (presets, domains")
    assert "linkedin.com" in loaded.names and "youtube.com" not in loaded.names  # the host stays reachable
