from detoxd.core.config import parse_blocklist, parse_main

PRESETS = ("social", "professional-networking", "messaging")


def errors(source: object) -> list[str]:
    return [str(issue) for issue in source.errors]  # type: ignore[attr-defined]


def test_empty_files_give_defaults() -> None:
    main, _ = parse_main("")
    assert main is not None and main.detox.days == 14 and main.detox.lock is True
    assert main.notifications.suppress is True
    blocklist, _ = parse_blocklist("", PRESETS)
    assert blocklist is not None and not blocklist.domains


def test_example_blocklist_from_the_issue() -> None:
    text = (
        "presets: [social, professional-networking]\n"
        "domains:\n  - news.ycombinator.com\n"
        "allow: []\nlists: []\napps: []\n"
    )
    blocklist, source = parse_blocklist(text, PRESETS)
    assert errors(source) == []
    assert blocklist is not None
    assert blocklist.presets == ("social", "professional-networking")
    assert blocklist.domains == ("news.ycombinator.com",)  # the loader adds www. variants


def test_all_errors_reported_together_with_file_line_and_path() -> None:
    text = (
        "presets: [social, socail]\n"        # line 1
        "domains:\n"
        "  - twitter.com\n"
        "  - 'twiter..com'\n"                  # line 4
        "  - 42\n"                             # line 5
        "alow: []\n"                           # line 6
    )
    _, source = parse_blocklist(text, PRESETS)
    found = errors(source)
    assert len(found) == 4
    assert found[0].startswith("blocklist.yaml:1: presets[1]: unknown preset 'socail'")
    assert found[1].startswith("blocklist.yaml:4: domains[1]: 'twiter..com'")
    assert found[2] == "blocklist.yaml:5: domains[2]: expected text, got int"
    assert found[3].startswith("blocklist.yaml:6: alow: unknown key")


def test_url_is_reduced_to_its_host_with_a_warning() -> None:
    blocklist, source = parse_blocklist("domains: ['https://twitter.com/']\n", PRESETS)
    assert blocklist is not None and "twitter.com" in blocklist.domains
    assert source.issues[0].severity == "warning"
    assert source.issues[0].line == 1


def test_a_urls_www_host_blocks_the_bare_name_too() -> None:
    blocklist, source = parse_blocklist("domains: ['https://www.reddit.com']\n", PRESETS)
    assert blocklist is not None and blocklist.domains == ("reddit.com",)  # the loader adds www.
    assert "'reddit.com' and 'www.reddit.com'" in source.issues[0].message


def test_a_url_with_a_path_in_domains_is_an_error_that_suggests_paths() -> None:
    text = "domains:\n  - ok.example.com\n  - https://www.reddit.com/r/all\n"
    blocklist, source = parse_blocklist(text, PRESETS)
    assert [str(issue) for issue in source.errors] == [
        "blocklist.yaml:3: domains[1]: 'https://www.reddit.com/r/all' has a path: `domains:` blocks whole "
        "sites; to block only that path write it under `paths:` as '- reddit.com/r/all' (the rest of "
        "reddit.com stays reachable)"]
    assert blocklist is not None and blocklist.domains == ("ok.example.com",)


def test_paths_are_normalised_and_checked_with_file_and_line() -> None:
    text = ("paths:\n  - linkedin.com/feed\n  - https://www.youtube.com/shorts\n  - reddit.com/\n"
            "  - x.com/a*b\n  - ex ample.com/x\n  - linkedin.com/feed\n")
    blocklist, source = parse_blocklist(text, PRESETS)
    assert blocklist is not None and blocklist.paths == ("linkedin.com/feed", "youtube.com/shorts")
    errors = [str(issue) for issue in source.errors]
    assert errors[0].startswith("blocklist.yaml:4: paths[2]: 'reddit.com/' names no path")
    assert errors[1].startswith("blocklist.yaml:5: paths[3]: 'x.com/a*b': the path may hold")
    assert errors[2].startswith("blocklist.yaml:6: paths[4]: 'ex ample.com/x': the host is unusable")
    assert len(errors) == 3
    warning = next(issue for issue in source.issues if issue.severity == "warning")
    assert (warning.line, warning.message) == (3, "'https://www.youtube.com/shorts' is a URL; "
                                                   "blocking 'youtube.com/shorts'")


def test_no_paths_key_means_no_paths() -> None:
    blocklist, source = parse_blocklist("domains: [a.example.com]\n", PRESETS)
    assert blocklist is not None and blocklist.paths == () and not source.issues


def test_injection_attempts_never_become_domains() -> None:
    text = 'domains: ["evil.com\\n0.0.0.0 bank.com", "a.com b.com", "x.com#y", "10.0.0.1"]\n'
    blocklist, source = parse_blocklist(text, PRESETS)
    assert len(source.errors) == 4
    assert blocklist is not None and blocklist.domains == ()


def test_main_config_types_and_unknown_sections() -> None:
    _, source = parse_main("detox:\n  days: fourteen\n  lock: 'yes'\npeer: []\n")
    assert errors(source) == [
        "detoxd.yaml:2: detox.days: expected a number, got str",
        "detoxd.yaml:3: detox.lock: expected true, false or peers, got 'yes'",
        "detoxd.yaml:4: peer: unknown key "
        "(expected one of: bypass, detox, mail, me, network, notifications, peers, peers_informed, "
        "schedule, sessions, share_activity)",
    ]


def test_days_range_checked() -> None:
    _, source = parse_main("detox: {days: 0}\n")
    assert "between" in errors(source)[0]
    main, _ = parse_main("detox: {days: 0.01, lock: false}\n")
    assert main is not None and main.detox.days == 0.01 and main.detox.lock is False


def test_days_may_be_365_at_most_and_0_0001_at_least() -> None:
    for days in ("365", "0.0001"):
        main, source = parse_main(f"detox: {{days: {days}}}\n")
        assert main is not None and main.detox.days == float(days) and not source.errors
    for days, shown in (("365.01", "365.01"), ("0.00009", "9e-05")):
        _, source = parse_main(f"detox: {{days: {days}}}\n")
        assert errors(source) == [f"detoxd.yaml:1: detox.days: must be between 0.0001 and 365, got {shown}"]


def test_app_names_validated() -> None:
    blocklist, source = parse_blocklist("apps: [slack, 'rm -rf /']\n", PRESETS)
    assert blocklist is not None and [rule.name for rule in blocklist.apps] == ["slack"]
    assert errors(source)[0].startswith("blocklist.yaml:1: apps[1]: unknown app preset 'rm -rf /'")


def test_bypass_browser_policies_defaults_on_and_can_be_switched_off() -> None:
    main, _ = parse_main("detox: {days: 14}\n")
    assert main is not None and main.bypass.browser_policies is True
    main, source = parse_main("bypass:\n  browser_policies: false\n")
    assert main is not None and main.bypass.browser_policies is False and not source.errors
    _, source = parse_main("bypass:\n  browser_policies: maybe\n  dns: off\n")
    assert errors(source) == [
        "detoxd.yaml:2: bypass.browser_policies: expected true or false, got str",
        "detoxd.yaml:3: bypass.dns: unknown key (expected one of: browser_policies)",
    ]


def test_allowances_from_the_issue_parse_with_the_blocklist() -> None:
    text = (
        "presets: [social, professional-networking]\n"
        "allowances:\n"
        "  - name: twitter\n"
        "    sites: [twitter.com, x.com]\n"
        "    minutes_per_day: 20\n"
        "    max_opens_per_day: 2\n"
        "    min_gap_minutes: 60\n"
        '    windows: ["Mon-Fri 12:30-12:50"]\n'
        "  - name: linkedin\n"
        "    sites: [professional-networking]\n"
        '    windows: ["Sat 10:00-10:30"]\n'
    )
    blocklist, source = parse_blocklist(text, PRESETS)
    assert errors(source) == []
    assert blocklist is not None
    assert [allowance.name for allowance in blocklist.allowances] == ["twitter", "linkedin"]
    assert blocklist.allowances[0].opens("pbs.twimg.com")


def test_allowance_errors_come_with_the_others() -> None:
    text = ("domains: ['twiter..com']\n"
            "allowances:\n  - name: t\n    sites: [x.com]\n    minutes_per_day: 2000\n")
    _, source = parse_blocklist(text, PRESETS)
    assert [message.split(":")[:3] for message in errors(source)] == [
        ["blocklist.yaml", "1", " domains[0]"], ["blocklist.yaml", "5", " allowances[0].minutes_per_day"]]


# ---- detox.lock: peers ----

FIVE_PEERS = "peers: [Ada, Grace, Alan, Katherine, Tim]\n"


def test_lock_peers_with_five_peers() -> None:
    main, source = parse_main("detox:\n  lock: peers\n  peers_needed: 3\n" + FIVE_PEERS)
    assert errors(source) == [] and main is not None
    assert main.detox.lock_mode == "peers" and main.detox.peer_lock and main.detox.lock is True
    assert main.detox.peers_needed == 3


def test_lock_true_and_false_keep_their_meaning() -> None:
    for text, mode, locked in (("true", "true", True), ("false", "false", False)):
        main, _ = parse_main(f"detox:\n  lock: {text}\n")
        assert main is not None and main.detox.lock_mode == mode and main.detox.lock is locked
        assert not main.detox.peer_lock


def test_lock_peers_needs_peers_listed() -> None:
    _, source = parse_main("detox:\n  days: 14\n  lock: peers\n")
    assert errors(source) == ["detoxd.yaml:3: detox.lock: `lock: peers` needs `peers:`, the people "
                              "who hold the shares of the early-end key (the challenge names 5)"]


def test_fewer_peers_listed_than_needed_names_the_line() -> None:
    _, source = parse_main("detox:\n  lock: peers\n  peers_needed: 4\npeers: [Ada, Grace, Alan]\n")
    assert errors(source) == ["detoxd.yaml:3: detox.peers_needed: 4 peers needed, but `peers:` lists only 3"]


def test_as_many_peers_as_listed_is_enough() -> None:
    _, source = parse_main("detox:\n  lock: peers\n  peers_needed: 3\npeers: [Ada, Grace, Alan]\n")
    assert errors(source) == []  # the challenge's five is only a warning on `peers:`


def test_peers_needed_range_and_bad_lock_value_reported_together() -> None:
    _, source = parse_main("detox:\n  lock: peer\n  peers_needed: 6\n")
    assert errors(source) == [
        "detoxd.yaml:2: detox.lock: expected true, false or peers, got 'peer'",
        "detoxd.yaml:3: detox.peers_needed: must be between 2 and 5, got 6",
    ]
    _, source = parse_main("detox:\n  lock: peers\n  peers_needed: 1\n" + FIVE_PEERS)
    assert errors(source) == ["detoxd.yaml:3: detox.peers_needed: must be between 2 and 5, got 1"]


def test_peers_needed_without_peer_lock_is_a_warning() -> None:
    _, source = parse_main("detox:\n  lock: true\n  peers_needed: 3\n")
    assert errors(source) == []
    assert [str(issue) for issue in source.issues] == [
        "detoxd.yaml:3: detox.peers_needed: warning: only used with `lock: peers`"]


def warnings(source: object) -> list[str]:
    return [str(issue) for issue in source.issues if issue.severity == "warning"]  # type: ignore[attr-defined]


def test_notifications_suppress_defaults_on_and_a_wrong_value_keeps_it_on() -> None:
    for text, suppress in (("", True), ("notifications: {}\n", True),
                           ("notifications: {suppress: false}\n", False),
                           ("notifications: {suppress: true}\n", True)):
        main, source = parse_main(text)
        assert main is not None and main.notifications.suppress is suppress and errors(source) == []
    main, source = parse_main("notifications:\n  suppress: sometimes\n  sound: off\n")
    assert errors(source) == [
        "detoxd.yaml:2: notifications.suppress: expected true or false, got str",
        "detoxd.yaml:3: notifications.sound: unknown key (expected one of: suppress)",
    ]
    assert main is None or main.notifications.suppress is True


def test_every_wrong_lock_value_is_named() -> None:
    for text, shown in (("'Yes'", "'Yes'"), ("{a: 1}", "a mapping"), ("[true]", "a list"), ("", "empty"),
                        ("3", "3"), ("1.5", "1.5")):
        _, source = parse_main(f"detox:\n  lock: {text}\n")
        assert errors(source) == [f"detoxd.yaml:2: detox.lock: expected true, false or peers, got {shown}"]
    main, source = parse_main("detox:\n  lock: ' PEERS '\n" + FIVE_PEERS)
    assert main is not None and main.detox.peer_lock and errors(source) == []


def test_peers_needed_without_lock_peers_is_a_warning_with_its_line() -> None:
    main, source = parse_main("detox:\n  days: 3\n  lock: true\n  peers_needed: 4\n")
    assert errors(source) == []
    assert warnings(source) == ["detoxd.yaml:4: detox.peers_needed: warning: only used with `lock: peers`"]
    assert main.detox.peers_needed == 4 and main.detox.peers_needed_line == 4 and main.detox.line == 3
    # Without `lock:` at all it is the default lock (on): the same warning.
    _, source = parse_main("detox:\n  peers_needed: 4\n")
    assert warnings(source) == ["detoxd.yaml:2: detox.peers_needed: warning: only used with `lock: peers`"]
    # A wrong `lock:` is its own error: no guess that peers were meant, no warning on top.
    _, source = parse_main("detox:\n  lock: peer\n  peers_needed: 4\n")
    assert warnings(source) == []
    main, source = parse_main("detox: {days: 2}\n")
    assert main is not None
    assert (main.detox.line, main.detox.peers_needed_line, main.detox.peers_needed) == (1, 0, 3)
    main, source = parse_main("detox:\n  days: 2\n  lock: peers\n  peers_needed: 5\n" + FIVE_PEERS)
    assert main is not None and main.detox.peers_needed == 5 and warnings(source) == []


def test_a_list_path_must_name_a_file() -> None:
    blocklist, source = parse_blocklist("lists: ['', '  ', \"a\\0b\", extra.txt]\n", PRESETS)
    assert errors(source) == ["blocklist.yaml:1: lists[0]: expected a file path",
                              "blocklist.yaml:1: lists[1]: expected a file path",
                              "blocklist.yaml:1: lists[2]: expected a file path"]
    assert blocklist is None or [ref.path for ref in blocklist.lists] == ["extra.txt"]
    blocklist, source = parse_blocklist("lists: [extra.txt]\n", PRESETS)
    assert errors(source) == [] and blocklist is not None
    assert [(ref.path, ref.line, ref.key_path) for ref in blocklist.lists] == [("extra.txt", 1, "lists[0]")]


def test_lock_peers_takes_at_most_16_peers() -> None:
    def peers(count: int) -> str:
        return "peers: [" + ", ".join(f"P{n}" for n in range(count)) + "]\n"

    _, source = parse_main("detox:\n  lock: peers\n" + peers(16))
    assert errors(source) == []
    _, source = parse_main("detox:\n  lock: peers\n" + peers(17))
    assert errors(source) == [
        "detoxd.yaml:2: detox.lock: `lock: peers` splits the key among at most 16 peers; `peers:` lists 17"]


def test_the_sections_are_checked_together_and_a_wrong_bypass_keeps_the_default() -> None:
    _, source = parse_main("me: {name: Ada}\nsessions: {first: 2026-03-02 18:00}\n")
    assert [str(issue) for issue in source.issues] == [
        "detoxd.yaml:2: peers: warning: no peers listed: the challenge is you and 5 people you trust"]
    main, source = parse_main("bypass: {browser_policies: 3}\n")
    assert main is None or main.bypass.browser_policies is True
    assert errors(source) == ["detoxd.yaml:1: bypass.browser_policies: expected true or false, got int"]


def test_allowed_names_and_the_given_app_presets_are_used() -> None:
    from detoxd.core.apps import AppRule, Matcher

    blocklist, source = parse_blocklist("allow: [Docs.Example.com]\n", PRESETS)
    assert errors(source) == [] and blocklist is not None
    assert blocklist.allow == frozenset({"docs.example.com"})
    own = {"chat": AppRule("chat", (Matcher("name", "chat"),), "Chat")}
    blocklist, source = parse_blocklist("apps: [chat]\n", PRESETS, app_presets=own)
    assert errors(source) == [] and blocklist is not None and blocklist.apps == (own["chat"],)
    _, source = parse_blocklist("apps: [slack]\n", PRESETS, app_presets=own)
    assert errors(source)[0].startswith("blocklist.yaml:1: apps[0]: unknown app preset 'slack'")
    _, source = parse_blocklist("presets: [nope]\n", ("b", "a"))
    assert errors(source) == ["blocklist.yaml:1: presets[0]: unknown preset 'nope' (available: a, b)"]


def test_a_number_of_the_wrong_kind_is_named() -> None:
    for value, wanted, got in (("2.5", "a whole number", "float"), ("[3]", "a whole number", "a list"),
                               ("{a: 1}", "a whole number", "a mapping"), ("", "a whole number", "empty"),
                               ("true", "a whole number", "bool")):
        _, source = parse_main(f"detox:\n  lock: peers\n  peers_needed: {value}\n" + FIVE_PEERS)
        assert errors(source) == [f"detoxd.yaml:3: detox.peers_needed: expected {wanted}, got {got}"]
    for value, got in (("true", "bool"), ("'3'", "str"), ("", "empty")):
        _, source = parse_main(f"detox:\n  days: {value}\n")
        assert errors(source) == [f"detoxd.yaml:2: detox.days: expected a number, got {got}"]
    main, source = parse_main("detox:\n  lock: peers\n  peers_needed: 2\n" + FIVE_PEERS)
    assert main is not None and main.detox.peers_needed == 2 and errors(source) == []
