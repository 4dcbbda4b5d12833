from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detoxd.core import apps
from detoxd.core.apps import AppRule, Matcher, ProcessInfo
from detoxd.core.config import parse_blocklist

PRESETS = ("social",)
USER = 1000


def proc(name: str = "x", exe: str = "", argv: tuple[str, ...] = (), *, pid: int = 500, ppid: int = 400,
         uid: int = USER, euid: int | None = None, flatpak: str | None = None) -> ProcessInfo:
    return ProcessInfo(pid, ppid, name, exe, argv, uid, uid if euid is None else euid,
                       flatpak_app=flatpak)


def rule(*texts: str, name: str = "app") -> AppRule:
    matchers = [apps.parse_matcher(text) for text in texts]
    assert all(isinstance(m, Matcher) for m in matchers), matchers
    return AppRule(name, tuple(m for m in matchers if isinstance(m, Matcher)))


def errors(source: object) -> list[str]:
    return [str(issue) for issue in source.errors]  # type: ignore[attr-defined]


# ---- matching ----


@pytest.mark.parametrize("process", [
    proc(name="slack"),
    proc(exe="/usr/lib/slack/slack"),
    proc(argv=("slack",)),
    proc(argv=("/home/me/bin/Slack", "--startup")),
    proc(name="Slack"),
])
def test_name_matches_process_name_executable_and_argv0_in_any_case(process: ProcessInfo) -> None:
    assert rule("slack").matches(process)


@pytest.mark.parametrize("process", [
    proc(name="vim", exe="/usr/bin/vim", argv=("vim", "slack.txt")),
    proc(name="vim", exe="/usr/bin/vim", argv=("vim", "slack")),
    proc(name="less", exe="/usr/bin/less", argv=("less", "/usr/lib/slack/slack")),
    proc(name="slackware", exe="/usr/bin/slackware"),
    # A process title that happens to end in the name is not a program called slack.
    proc(name="python3", exe="/usr/bin/python3.11", argv=("editor /home/me/slack",)),
])
def test_arguments_and_lookalikes_never_match(process: ProcessInfo) -> None:
    assert not rule("slack", "/usr/lib/slack/slack", "/usr/lib/slack/").matches(process)


@given(st.lists(st.text(max_size=40), max_size=5))
def test_arguments_after_argv0_never_change_the_verdict(arguments: list[str]) -> None:
    base = proc(name="editor", exe="/usr/bin/editor", argv=("editor",))
    with_args = proc(name="editor", exe="/usr/bin/editor", argv=("editor", *arguments)[:3])
    slack = apps.builtin_presets()["slack"]
    assert slack.matches(base) is slack.matches(with_args) is False


def test_long_names_match_the_kernel_truncated_process_name() -> None:
    telegram = rule("telegram-desktop")
    assert telegram.matches(proc(name="telegram-deskto"))
    assert not telegram.matches(proc(name="telegram-desk"))
    assert not rule("telegram-deskto-other").matches(proc(name="telegram-desktop"[:14]))


def test_paths_match_exactly_and_directories_by_prefix() -> None:
    exact = rule("/opt/mychat/mychat")
    assert exact.matches(proc(exe="/opt/mychat/mychat"))
    assert exact.matches(proc(exe="/usr/bin/python3.11", argv=("/opt/mychat/mychat",)))
    assert not exact.matches(proc(exe="/opt/mychat/mychat-helper"))
    directory = rule("/snap/slack/")
    assert directory.matches(proc(exe="/snap/slack/123/usr/lib/slack/slack"))
    assert not directory.matches(proc(exe="/snap/slackish/1/bin/x"))
    assert not directory.matches(proc(exe="/usr/bin/cat", argv=("cat", "/snap/slack/1/x")))


def test_flatpak_matchers_use_the_app_id() -> None:
    flatpak = rule("flatpak:com.slack.Slack")
    assert flatpak.matches(proc(name="bwrap", exe="/usr/bin/bwrap", flatpak="com.slack.Slack"))
    assert not flatpak.matches(proc(name="slack", flatpak="com.discordapp.Discord"))


def test_a_deleted_executable_still_matches_by_path() -> None:
    assert apps.clean_exe("/opt/mychat/mychat (deleted)") == "/opt/mychat/mychat"


# ---- validation ----


@pytest.mark.parametrize(("text", "problem"), [
    ("", "empty matcher"),
    ("   ", "empty matcher"),
    ("bin/slack", "paths must be absolute"),
    ("/opt/../usr/bin/x", "not a normalised absolute path"),
    ("/opt//mychat", "not a normalised absolute path"),
    ("/", "not a normalised absolute path"),
    ("/opt/", "a directory this broad"),
    ("/usr/bin/", "a directory this broad"),
    ("/usr/local/bin/", "a directory this broad"),
    ("bash", "would close the system or your session"),
    ("/usr/bin/python3", "would close the system or your session"),
    ("python3.11", "would close the system or your session"),
    ("detoxd", "would close the system or your session"),
    ("my chat", "is not a program name"),
    ("slack\n", "control characters"),
    ("flatpak:slack", "is not a Flatpak app id"),
    ("flatpak:", "is not a Flatpak app id"),
])
def test_bad_matchers_are_refused(text: str, problem: str) -> None:
    result = apps.parse_matcher(text)
    assert isinstance(result, str) and problem in result


def test_config_accepts_presets_and_explicit_rules() -> None:
    text = (
        "apps:\n"
        "  - slack\n"
        "  - discord\n"
        "  - slack\n"                               # a preset twice is harmless
        "  - name: my-chat-client\n"
        "    match: [my-chat, /opt/mychat/mychat]\n"
    )
    blocklist, source = parse_blocklist(text, PRESETS)
    assert errors(source) == []
    assert blocklist is not None
    assert [r.name for r in blocklist.apps] == ["slack", "discord", "my-chat-client"]
    assert [str(m) for m in blocklist.apps[2].matchers] == ["my-chat", "/opt/mychat/mychat"]


def test_config_errors_carry_file_line_and_path() -> None:
    text = (
        "apps:\n"
        "  - slak\n"                                # 2
        "  - name: a\n"                             # 3
        "    match: []\n"                           # 4
        "  - name: b\n"                             # 5
        "    match: ['', ok-name, 'rel/path']\n"    # 6
        "  - name: c\n"                             # 7
        "  - name: Bad Name\n"                      # 8
        "    match: [x]\n"
        "  - name: my-chat\n"                       # 10
        "    match: [x]\n"
        "  - name: my-chat\n"                       # 12
        "    match: [y]\n"
        "  - 42\n"                                  # 14
        "  - {name: d, match: [z], extra: 1}\n"     # 15
    )
    blocklist, source = parse_blocklist(text, PRESETS, app_presets=apps.builtin_presets())
    assert blocklist is not None and [r.name for r in blocklist.apps] == ["my-chat", "d"]
    found = errors(source)
    assert found[0].startswith("blocklist.yaml:2: apps[0]: unknown app preset 'slak' (available: ")
    assert found[1] == ("blocklist.yaml:4: apps[1].match: needs at least one matcher "
                        "(a program name, an absolute path or flatpak:APP.ID)")
    assert found[2] == "blocklist.yaml:6: apps[2].match[0]: empty matcher"
    assert found[3].startswith("blocklist.yaml:6: apps[2].match[2]: 'rel/path': paths must be absolute")
    assert found[4] == "blocklist.yaml:7: apps[3]: missing `match:`"
    assert found[5].startswith("blocklist.yaml:8: apps[4].name: 'Bad Name' is not an app name")
    assert found[6] == "blocklist.yaml:12: apps[6]: app 'my-chat' is listed twice"
    assert found[7] == "blocklist.yaml:14: apps[7]: expected text, got int"
    assert found[8].startswith("blocklist.yaml:15: apps[8].extra: unknown key")
    assert len(found) == 9


def test_builtin_presets_cover_the_common_apps() -> None:
    presets = apps.builtin_presets()
    for name in ("slack", "discord", "teams", "telegram", "whatsapp", "signal", "element", "skype"):
        kinds = {m.kind for m in presets[name].matchers}
        assert {"name", "directory", "flatpak"} <= kinds, name
        assert any(str(m).startswith("/snap/") for m in presets[name].matchers), name
    assert "zoom" in presets  # shipped, but only closed when listed
    assert presets["discord"].matches(proc(name="Discord", exe="/usr/share/discord/Discord"))
    assert presets["telegram"].matches(proc(name="telegram-deskto", exe="/usr/bin/telegram-desktop"))


def test_broken_preset_data_fails_loudly() -> None:
    with pytest.raises(apps.BrokenAppPresetsError, match="'x'"):
        apps.parse_presets("x:\n  description: X\n  match: [bash]\n")
    with pytest.raises(apps.BrokenAppPresetsError):
        apps.parse_presets("x:\n  description: X\n  match: []\n")


# ---- what is never closed ----


@pytest.mark.parametrize(("process", "reason"), [
    (proc(pid=1, ppid=0, uid=0), "the init process"),
    (proc(pid=2, ppid=0, uid=0), "a kernel process"),
    (ProcessInfo(77, 2, "kworker/0:1", kernel_thread=True), "a kernel thread"),
    (proc(uid=0), "runs as a system user (uid 0)"),
    (proc(uid=999), "runs as a system user (uid 999)"),
    (proc(uid=USER, euid=0), "runs as a system user (uid 0)"),  # setuid helpers, sudo
    (proc(uid=65534), "runs as a system user (uid 65534)"),
    (proc(pid=4321), "detoxd itself"),
    (proc(name="detoxd"), "detoxd itself"),
    (proc(argv=("/usr/bin/python3", "/usr/local/bin/detoxd", "tray")), "detoxd itself"),
    (proc(argv=("python3", "-m", "detoxd")), "detoxd itself"),
    (ProcessInfo(500, 400, "slack"), "its owner is unknown"),
])
def test_protected_processes(process: ProcessInfo, reason: str) -> None:
    assert apps.protection(process, own_pid=4321) == reason


def test_user_processes_are_not_protected() -> None:
    assert apps.protection(proc(name="slack", uid=1000), own_pid=4321) is None


def test_tree_root_climbs_to_the_topmost_process_of_the_same_app() -> None:
    table = {
        10: proc(name="bash", pid=10, ppid=1),
        20: proc(name="slack", pid=20, ppid=10),
        30: proc(name="slack", pid=30, ppid=20),
        40: proc(name="slack", pid=40, ppid=30),
    }
    slack = rule("slack")
    assert apps.tree_root(table[40], slack, table.get, own_pid=1).pid == 20
    table[20] = proc(name="slack", pid=20, ppid=10, uid=0)  # started by root: stop below it
    assert apps.tree_root(table[40], slack, table.get, own_pid=1).pid == 30


def test_descendants_follow_the_parent_map() -> None:
    parents = {2: 1, 3: 2, 4: 3, 5: 1, 6: 99}
    assert apps.descendants(2, parents) == {3, 4}
    assert apps.descendants(1, parents) == {2, 3, 4, 5}
    assert apps.descendants(4, parents) == set()


# ---- /proc text ----


def test_parse_stat_handles_names_with_parentheses_and_states() -> None:
    stat = "123 (a) (b) S 45 123 123 0 -1 4194560 0 0"
    assert apps.parse_stat(123, stat) == ("a) (b", 45, False, False)
    zombie = "124 (slack) Z 45 124 124 0 -1 4194316 0 0"
    assert apps.parse_stat(124, zombie) == ("slack", 45, False, True)
    kthread = "7 (kworker/0:0) I 2 0 0 0 -1 69238880 0 0"
    assert apps.parse_stat(7, kthread) == ("kworker/0:0", 2, True, False)
    assert apps.parse_stat(1, "") is None
    assert apps.parse_stat(1, "1 (x") is None


def test_parse_uids_and_cmdline() -> None:
    status = "Name:\tslack\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n"
    assert apps.parse_uids(status) == (1000, 0)
    assert apps.parse_uids("Name: x\n") == (None, None)
    assert apps.parse_cmdline(b"/usr/bin/slack\x00--a\x00--b\x00--c\x00") == ("/usr/bin/slack", "--a", "--b")
    assert apps.parse_cmdline(b"") == ()


@pytest.mark.parametrize(("cgroup", "app_id"), [
    ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/"
     "app-flatpak-com.slack.Slack-1234.scope\n", "com.slack.Slack"),
    ("12:pids:/user.slice\n1:name=systemd:/user.slice/user-1000.slice/user@1000.service/"
     "app-flatpak-org.telegram.desktop-99.scope\n0::/user.slice\n", "org.telegram.desktop"),
    ("0::/app.slice/app-flatpak-com.github.IsmaelMartinez.teams_for_linux-7.scope\n",
     "com.github.IsmaelMartinez.teams_for_linux"),
    ("0::/app.slice/app-flatpak-io.github.some\\x2dapp.Client-7.scope\n", "io.github.some-app.Client"),
    ("0::/user.slice/user-1000.slice/session-2.scope\n", None),
    ("0::/app.slice/app-gnome-org.gnome.Terminal-12.scope\n", None),
    ("", None),
])
def test_flatpak_app_id_from_cgroup(cgroup: str, app_id: str | None) -> None:
    assert apps.flatpak_app_id(cgroup) == app_id


def test_findings_are_described_for_the_dry_run() -> None:
    slack = proc(name="slack", exe="/usr/lib/slack/slack", pid=20)
    root_slack = proc(name="slack", exe="/usr/lib/slack/slack", pid=30, uid=0)
    lines = apps.describe_findings([
        apps.Finding("slack", root_slack, "runs as a system user (uid 0)"),
        apps.Finding("slack", slack, None, descendants=3),
    ])
    assert lines == [
        "  slack: would close pid 20 /usr/lib/slack/slack (uid 1000) and 3 child processes",
        "  slack: pid 30 /usr/lib/slack/slack (uid 0) matches but is spared: runs as a system user (uid 0)",
    ]


def test_kept_rules_round_trip_through_json_and_accumulate() -> None:
    import json

    from detoxd.core.apps import AppRule, parse_matcher, ratchet_rules, rules_from_json, rules_to_json

    def rule(name: str, *texts: str) -> AppRule:
        matchers = tuple(parse_matcher(text) for text in texts)
        assert all(not isinstance(m, str) for m in matchers)
        return AppRule(name, matchers)  # type: ignore[arg-type]

    slack = rule("slack", "slack", "/snap/slack/", "flatpak:com.slack.Slack")
    chat = rule("chat", "/opt/chat/chat")
    assert rules_from_json(json.loads(json.dumps(rules_to_json([slack, chat])))) == (slack, chat)
    assert ratchet_rules([slack, chat], [chat]) == (chat, slack)
    assert ratchet_rules([], [chat]) == (chat,)
    with pytest.raises(ValueError):
        rules_from_json([{"name": "bad", "match": ["relative/path"]}])


def test_app_presets_are_read_exactly_and_every_flaw_is_named() -> None:
    presets = apps.parse_presets(
        "slack:\n  description: '  Slack, the chat  '\n"
        "  match: [slack, /snap/slack/, 'flatpak:com.slack.Slack']\n"
        "chat.app:\n  description: Chat\n  match: [/opt/chat/chat]\n")
    assert presets == {
        "slack": AppRule("slack", (Matcher("name", "slack"), Matcher("directory", "/snap/slack/"),
                                   Matcher("flatpak", "com.slack.Slack")), "Slack, the chat"),
        "chat.app": AppRule("chat.app", (Matcher("path", "/opt/chat/chat"),), "Chat"),
    }
    needs = "app preset 'slack' needs a description and a match list"
    for text, message in [
        ("", "app presets must be a mapping of names to presets"),
        ("[slack]\n", "app presets must be a mapping of names to presets"),
        ("{}\n", "app presets must be a mapping of names to presets"),
        ("Slack:\n  description: S\n  match: [slack]\n", "app preset 'Slack' is malformed"),
        ("1:\n  description: S\n  match: [slack]\n", "app preset 1 is malformed"),
        ("slack: [slack]\n", "app preset 'slack' is malformed"),
        ("slack:\n  match: [slack]\n", needs),
        ("slack:\n  description: 5\n  match: [slack]\n", needs),
        ("slack:\n  description: S\n  match: slack\n", needs),
        ("slack:\n  description: S\n  match: []\n", needs),
        ("slack:\n  description: S\n  match: [7]\n", "app preset 'slack': 7 is not text"),
        ("slack:\n  description: S\n  match: [a/b]\n", "app preset 'slack': 'a/b': paths must be absolute "
                                                        "(start with /)"),
    ]:
        with pytest.raises(apps.BrokenAppPresetsError) as raised:
            apps.parse_presets(text)
        assert str(raised.value) == message, text


def test_saved_rules_are_read_back_exactly_or_refused_with_the_reason() -> None:
    from detoxd.core.apps import rules_from_json, rules_to_json

    chat = AppRule("chat", (Matcher("path", "/opt/chat/chat"), Matcher("flatpak", "org.chat.Chat")), "Chat")
    saved = rules_to_json([chat])
    assert saved == [{"name": "chat", "match": ["/opt/chat/chat", "flatpak:org.chat.Chat"],
                      "description": "Chat"}]
    assert rules_from_json(saved) == (chat,)
    assert rules_from_json([{"name": "x", "match": ["x"]}]) == (AppRule("x", (Matcher("name", "x"),), ""),)
    assert rules_from_json([]) == ()
    for document, message in [
        ({"name": "x"}, "expected a list of rules"),
        (["x"], "not a rule: 'x'"),
        ([{"name": "x", "match": "x"}], "not a rule: {'name': 'x', 'match': 'x'}"),
        ([{"name": "x", "match": []}], "invalid rule 'x': no matchers"),
        ([{"name": "x", "match": ["a/b", "", "ok"]}],
         "invalid rule 'x': 'a/b': paths must be absolute (start with /), empty matcher"),
    ]:
        with pytest.raises(ValueError) as raised:
            rules_from_json(document)
        assert str(raised.value) == message


def test_the_first_matching_rule_is_the_one_that_closes() -> None:
    chat = AppRule("chat", (Matcher("name", "chat"),))
    also = AppRule("also", (Matcher("name", "chat"),))
    other = AppRule("other", (Matcher("name", "other"),))
    process = proc(name="chat", exe="/usr/bin/chat")
    assert apps.rule_for([other, chat, also], process) is chat
    assert apps.rule_for([other], process) is None and apps.rule_for([], process) is None
