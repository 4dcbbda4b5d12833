import os
from pathlib import Path

import pytest

from detoxd.core.yamlsource import ConfigError
from detoxd.service.loader import LARGE_BLOCK_WARNING, load_config


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
    with pytest.raises(ConfigError, match="cannot open"):
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
    write(tmp_path, "blocklist.yaml", "domains:\n  - 'a..b'\n  - https://x.com/home\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert [issue.line for issue in caught.value.issues] == [2]
    assert [str(w) for w in caught.value.warnings] == [
        "blocklist.yaml:3: domains[1]: warning: 'https://x.com/home' is a URL; using its host 'x.com'"]


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
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, trusted_uids={os.geteuid() + 1})
    assert "network[0].password_file: refusing 'pihole.secret': owned by uid" in str(caught.value)
