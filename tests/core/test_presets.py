from importlib.resources import files

import pytest
import yaml

from detoxd.core.domains import Normalized, normalize_domain
from detoxd.core.presets import (
    PRESET_NAMES,
    BrokenPresetError,
    UnknownPresetError,
    _parse,
    covered,
    describe,
    load_groups,
    load_preset,
)

REQUIRED_HOSTS = {
    "social": {
        "twitter.com",
        "www.twitter.com",
        "mobile.twitter.com",
        "api.twitter.com",
        "x.com",
        "t.co",
        "abs.twimg.com",
        "pbs.twimg.com",
        "facebook.com",
        "www.facebook.com",
        "m.facebook.com",
        "connect.facebook.net",
        "static.xx.fbcdn.net",
        "instagram.com",
        "www.instagram.com",
        "i.instagram.com",
        "scontent.cdninstagram.com",
        "threads.net",
        "threads.com",
        "tiktok.com",
        "www.tiktok.com",
        "tiktokv.com",
        "tiktokcdn.com",
        "reddit.com",
        "www.reddit.com",
        "old.reddit.com",
        "new.reddit.com",
        "i.redd.it",
        "v.redd.it",
        "preview.redd.it",
        "www.redditstatic.com",
        "styles.redditmedia.com",
        "bsky.app",
        "bsky.social",
        "public.api.bsky.app",
        "www.pinterest.com",
        "i.pinimg.com",
        "www.snapchat.com",
        "www.tumblr.com",
        "mastodon.social",
    },
    "professional-networking": {
        "linkedin.com",
        "www.linkedin.com",
        "static.licdn.com",
        "media.licdn.com",
        "lnkd.in",
        "www.xing.com",
        "www.meetup.com",
        "www.eventbrite.com",
    },
    "messaging": {
        "web.whatsapp.com",
        "whatsapp.com",
        "whatsapp.net",
        "messenger.com",
        "www.messenger.com",
        "web.telegram.org",
        "telegram.org",
        "t.me",
        "discord.com",
        "discord.gg",
        "discordapp.com",
        "discordapp.net",
        "cdn.discordapp.com",
        "gateway.discord.gg",
        "slack.com",
        "app.slack.com",
        "slack-edge.com",
        "teams.microsoft.com",
    },
    "video": {"youtube.com", "www.youtube.com", "m.youtube.com", "youtu.be", "www.twitch.tv"},
}


def raw_preset(name: str) -> dict[str, object]:
    text = files("detoxd.core.presets").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def test_preset_names_come_from_the_files() -> None:
    assert PRESET_NAMES == ("messaging", "professional-networking", "social", "video")


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_file_has_a_description_and_hosts(name: str) -> None:
    document = raw_preset(name)
    assert set(document) == {"description", "hosts", "groups"}
    assert isinstance(document["description"], str) and describe(name)
    assert isinstance(document["hosts"], list) and len(document["hosts"]) >= 5


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_host_is_already_normalised(name: str) -> None:
    for host in raw_preset(name)["hosts"]:  # type: ignore[attr-defined]
        assert normalize_domain(host) == Normalized(host)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_no_host_is_listed_twice_within_a_preset(name: str) -> None:
    hosts = load_preset(name)
    assert len(hosts) == len(set(hosts))


@pytest.mark.parametrize("name", sorted(REQUIRED_HOSTS))
def test_presets_cover_the_required_brands(name: str) -> None:
    assert REQUIRED_HOSTS[name] <= set(load_preset(name))


def test_load_preset_returns_the_file_hosts_in_order() -> None:
    assert load_preset("social") == tuple(raw_preset("social")["hosts"])  # type: ignore[arg-type]


def test_every_preset_file_comments_its_hosts() -> None:
    # Curated means explained: each file starts with why it exists and groups hosts by brand.
    for name in PRESET_NAMES:
        text = files("detoxd.core.presets").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
        assert text.startswith(f"# {name}:")
        assert text.count("  # ") >= 2


@pytest.mark.parametrize("name", ["socail", "../social", "social.yaml", ""])
def test_unknown_presets_raise_a_clear_key_error(name: str) -> None:
    with pytest.raises(KeyError) as raised:
        load_preset(name)
    assert isinstance(raised.value, UnknownPresetError)
    assert str(raised.value) == (
        f"unknown preset {name!r} (available: messaging, professional-networking, social, video)"
    )
    with pytest.raises(UnknownPresetError):
        describe(name)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("hosts: [a.com\n", "not valid YAML"),
        ("- a.com\n", "must be a mapping"),
        ("hosts: [a.com]\n", "needs a description"),
        ("description: x\nhosts: []\n", "needs a list of hosts"),
        ("description: x\nhosts: [a.com, 'b.com\n0.0.0.0 c.com']\n", "whitespace"),
        ("description: x\nhosts: [Twitter.com]\n", "should be written 'twitter.com'"),
        ("description: x\nhosts: [https://x.com/]\n", "should be written 'x.com'"),
        ("description: x\nhosts: [1]\n", "1 is not a host name"),
        ("description: x\nhosts: [a.com]\n", "needs a mapping of groups"),
        ("description: x\nhosts: [a.com]\ngroups: {A: [a.com]}\n", "not a lower-case word"),
        ("description: x\nhosts: [a.com]\ngroups: {a: []}\n", "needs a list of domains"),
        ("description: x\nhosts: [a.com]\ngroups: {a: [a.com, b.com]}\n", "'b.com' covers no host"),
        ("description: x\nhosts: [a.com, cdn.c.com]\ngroups: {a: [a.com]}\n", "in no group: cdn.c.com"),
    ],
)
def test_a_broken_preset_file_fails_loudly(text: str, problem: str) -> None:
    with pytest.raises(BrokenPresetError, match=problem):
        _parse("broken", text)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_host_belongs_to_a_site_group(name: str) -> None:
    # An allowance opens whole groups: a host in none would stay blocked while its site is open.
    domains = {domain for group in load_groups(name).values() for domain in group}
    assert all(covered(host, domains) for host in load_preset(name))


def test_the_twitter_group_brings_its_api_and_cdn_hosts() -> None:
    twitter = set(load_groups("social")["twitter"])
    for host in ("twitter.com", "api.x.com", "t.co", "pbs.twimg.com", "video.twimg.com"):
        assert covered(host, twitter)
    assert not covered("facebook.com", twitter)
    assert not covered("nottwitter.com", twitter)  # a suffix match is by whole labels
