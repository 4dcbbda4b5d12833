"""What doctor concludes, as glibc reads the files (detoxd.core.diagnosis)."""

from __future__ import annotations

from detoxd.core.diagnosis import GLIBC_DEFAULT_HOSTS, Override, hosts_sources, overrides, sort_lookups


def test_the_last_hosts_line_wins_as_in_glibc() -> None:
    text = "passwd: files\nhosts: files dns\nhosts:   dns   files # later\n"
    assert hosts_sources(text) == "dns files"
    assert hosts_sources("passwd: files\n") == GLIBC_DEFAULT_HOSTS
    assert hosts_sources(None) == GLIBC_DEFAULT_HOSTS
    assert hosts_sources("#hosts: dns\nhosts: files\n") == "files"


def test_overrides_are_lines_giving_a_blocked_name_a_real_address() -> None:
    text = ("127.0.0.1 localhost\n"
            "104.244.42.1 twitter.com\n"  # above the block: glibc answers this
            "10.0.0.1 nas Twitter.COM\n"  # an alias, in any case
            "# 1.2.3.4 twitter.com\n"  # a comment
            "0.0.0.0 twitter.com\n::0 twitter.com\n0:0::0 x.com\n"  # null, however written
            "not-an-address twitter.com\n"  # glibc skips it
            "fe80::1%eth0 x.com\n")
    assert overrides(text, {"twitter.com", "x.com"}) == [
        Override(2, "104.244.42.1", "twitter.com"), Override(3, "10.0.0.1", "Twitter.COM"),
        Override(9, "fe80::1%eth0", "x.com")]
    assert overrides(text, set()) == []


def test_only_a_real_answer_escapes() -> None:
    found = sort_lookups({"a.com": ("0.0.0.0", "::"), "b.com": None, "c.com": (),
                          "d.com": ("0.0.0.0", "104.244.42.1"), "e.com": ("::ffff:0.0.0.0",)})
    assert found.blocked == ("a.com", "e.com")
    assert found.unresolved == ("b.com", "c.com")
    assert found.escaping == ("d.com",)
