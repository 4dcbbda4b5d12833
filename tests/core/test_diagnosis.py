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


def test_a_comment_ends_a_line_at_its_first_hash() -> None:
    assert hosts_sources("hosts: files # then dns # and mdns\n") == "files"
    assert hosts_sources(" hosts :  files  [NOTFOUND=return]  dns\nhostsx: dns\n") == (
        "files [NOTFOUND=return] dns")
    text = "104.244.42.1 twitter.com # was: 1.2.3.4 twitter.com # before that x.com\n"
    assert overrides(text, {"twitter.com", "x.com"}) == [Override(1, "104.244.42.1", "twitter.com")]
    assert str(Override(4, "10.0.0.1", "x.com")) == "line 4: 10.0.0.1 x.com"


def test_a_scoped_address_is_the_address_before_its_scope() -> None:
    assert overrides("fe80::1%eth0%x x.com\n0.0.0.0%lo x.com\n::%lo x.com\n", {"x.com"}) == [
        Override(1, "fe80::1%eth0%x", "x.com")]
    found = sort_lookups({"a.com": ("::%lo",), "b.com": ("fe80::1%eth0",)})
    assert (found.blocked, found.escaping) == (("a.com",), ("b.com",))
