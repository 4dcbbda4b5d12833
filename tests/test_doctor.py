"""`detoxd doctor`'s evaluation: every failure mode from facts (pure), plus its gathering helpers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from detoxd import doctor
from detoxd.core import doctorchecks as checks
from detoxd.core.doctorchecks import Facts, Level
from detoxd.core.policies import InstalledBrowsers
from detoxd.protocol import Status
from detoxd.service import execwatch

BLOCKED = frozenset({"twitter.com", "www.twitter.com"})
STATUS = {"state": "active", "days_left": 12, "ends_at": "2030-01-01T00:00:00+00:00",
          "domains_blocked": 2, "hosts_in_sync": True, "version": "0.1", "hosts_file": "/etc/hosts"}
FIREFOX_ON = {"policies": {
    "DNSOverHTTPS": {"Enabled": False, "Locked": True},
    "ExtensionSettings": {"browser@detoxd.org": {
        "installation_mode": "force_installed", "private_browsing": True,
        "install_url": "file:///var/lib/detoxd/browser/firefox/detoxd.xpi"}},
    "Preferences": {"xpinstall.signatures.required": {"Value": False, "Status": "locked"}}}}
FIREFOX_HOST = "usr/lib/mozilla/native-messaging-hosts/org.detoxd.browser_host.json"
XPI = "var/lib/detoxd/browser/firefox/detoxd.xpi"
EXT_ID = "a" * 32
CHROME_ON = {"DnsOverHttpsMode": "off", "IncognitoModeAvailability": 1, "BrowserGuestModeEnabled": False,
             "ExtensionInstallForcelist": [
    f"{EXT_ID};file:///var/lib/detoxd/browser/chromium/update.xml"]}
CHROME_HOST = "etc/opt/chrome/native-messaging-hosts/org.detoxd.browser_host.json"
EXTENSION_FILES = {
    CHROME_HOST: {"name": "org.detoxd.browser_host", "allowed_origins": [f"chrome-extension://{EXT_ID}/"]},
    "var/lib/detoxd/browser/chromium/update.xml": True, "var/lib/detoxd/browser/chromium/detoxd.crx": True,
    "var/lib/detoxd/browser/detoxd-browser-host": True,
    FIREFOX_HOST: {"name": "org.detoxd.browser_host", "allowed_extensions": ["browser@detoxd.org"]},
    XPI: True, checks.FIREFOX_CHANNELS: {"/usr/lib/firefox-esr": "esr"}}


def healthy(**changes: Any) -> Facts:
    facts = Facts(
        status=Status.from_json(STATUS), block_names=BLOCKED,
        lookups={name: ("0.0.0.0", "::") for name in BLOCKED},
        nsswitch="passwd: files\nhosts:          files mdns4_minimal [NOTFOUND=return] dns\n",
        resolved_running=True, resolved_configs=("[Resolve]\n#ReadEtcHosts=yes\n",),
        browsers=InstalledBrowsers(("firefox", "chrome"), ()),
        policy_documents={"etc/firefox/policies/policies.json": FIREFOX_ON,
                          "etc/opt/chrome/policies/managed/detoxd.json": CHROME_ON},
        extension_files=EXTENSION_FILES, service_enabled="enabled")
    if isinstance(changes.get("status"), dict):
        changes["status"] = Status.from_json(changes["status"])
    return dataclasses.replace(facts, **changes)


def levels(facts: Facts) -> dict[str, Level]:
    return {check.name: check.level for check in checks.evaluate(facts).checks}


def failed(facts: Facts) -> dict[str, checks.Check]:
    report = checks.evaluate(facts)
    assert not report.effective
    failures = {check.name: check for check in report.checks if check.level is Level.FAIL}
    assert all(check.fix for check in failures.values()), "each failed check says what to do"
    return failures


def test_a_healthy_machine_is_effective() -> None:
    report = checks.evaluate(healthy())
    assert report.effective, checks.format_human(report)
    assert levels(healthy())["notifications"] is Level.SKIP  # no tray agent reported


@pytest.mark.parametrize(("changes", "failing"), [
    ({"status": None, "daemon_error": "connection refused"}, "daemon"),
    ({"service_enabled": "disabled"}, "service"),
    ({"service_enabled": ""}, "service"),
    ({"status": {**STATUS, "state": "idle"}}, "detox"),
    ({"status": {**STATUS, "config_error": "blocklist.yaml:3: domains[1]: 'face..book'"}}, "config"),
    ({"status": {**STATUS, "hosts_in_sync": False}}, "hosts block"),
    ({"status": {**STATUS, "hosts_in_sync": False, "hosts_file_problem": {
        "reason": "/etc/hosts is a FIFO, not a regular file", "fix": "make /etc/hosts a regular file"}}},
     "hosts block"),
    ({"block_names": frozenset({"twitter.com"})}, "hosts block"),
    ({"lookups": {"twitter.com": ("104.244.42.1",), "www.twitter.com": ("0.0.0.0",)}}, "resolution"),
    ({"nsswitch": "hosts: dns files\n"}, "nsswitch"),
    ({"nsswitch": "hosts: dns\n"}, "nsswitch"),
    ({"nsswitch": "passwd: files\n"}, "nsswitch"),  # glibc's default asks dns first
    ({"resolved_configs": ("[Resolve]\nReadEtcHosts=no\n",)}, "systemd-resolved"),
    ({"policy_documents": {}}, "browser policies: firefox"),
    ({"policy_documents": {"etc/firefox/policies/policies.json": "/etc/firefox/...: not valid JSON"}},
     "browser policies: firefox"),
    ({"policy_conflicts": {"chrome": ("/etc/opt/chrome/policies/managed/corp.json",)}},
     "browser policies: chrome"),
    ({"status": {**STATUS, "agents": [{"uid": 1000, "notifications_silenced": False}]}}, "notifications"),
])
def test_each_failure_mode_is_reported_with_a_fix(changes: dict[str, Any], failing: str) -> None:
    assert failing in failed(healthy(**changes))


def test_what_blocks_the_hosts_file_is_the_reason_and_its_fix_the_fix() -> None:
    problem = {"reason": "/etc/hosts is immutable (chattr +i)", "fix": "sudo chattr -i -a /etc/hosts"}
    check = failed(healthy(status={**STATUS, "hosts_in_sync": False, "hosts_file_problem": problem}))
    assert "immutable" in check["hosts block"].message
    assert check["hosts block"].fix == "sudo chattr -i -a /etc/hosts"


def test_resolved_drop_ins_are_applied_in_order() -> None:
    assert checks.reads_etc_hosts([]) is True
    assert checks.reads_etc_hosts(["[Resolve]\nReadEtcHosts=no\n", "[Resolve]\nReadEtcHosts=yes\n"])
    assert not checks.reads_etc_hosts(["[Resolve]\nDNS=1.1.1.1\n", "[Resolve]\nReadEtcHosts=false\n"])
    stopped = healthy(resolved_running=False, resolved_configs=("[Resolve]\nReadEtcHosts=no\n",))
    assert levels(stopped)["systemd-resolved"] is Level.SKIP


def test_nsswitch_with_resolve_first_relies_on_resolved() -> None:
    check = checks.check_nsswitch("hosts: resolve [!UNAVAIL=return] files myhostname dns\n")
    assert check.level is Level.OK and "ReadEtcHosts" in check.message


def test_uncovered_browsers_and_switched_off_policies_warn_only() -> None:
    facts = healthy(browsers=InstalledBrowsers((), ("firefox (snap/bin/firefox)",)))
    assert levels(facts)["browser policies: firefox (snap/bin/firefox)"] is Level.WARN
    assert checks.evaluate(facts).effective
    assert levels(healthy(browser_policies_enabled=False))["browser policies"] is Level.WARN


def test_an_agent_that_could_not_silence_says_why_and_what_to_do() -> None:
    agent = {"uid": 1000, "notifications_silenced": False, "backend": "mako",
             "reason": "mako's do-not-disturb mode does not hide notifications (/home/a/.config/mako/config)",
             "fix": "add '[mode=do-not-disturb]' and 'invisible=1' to /home/a/.config/mako/config"}
    check = next(c for c in checks.evaluate(healthy(status={**STATUS, "agents": [agent]})).checks
                 if c.name == "notifications")
    assert check.level is Level.FAIL
    assert "uid 1000: mako's do-not-disturb mode does not hide notifications" in check.message
    assert check.fix == agent["fix"]


def test_silenced_agents_pass() -> None:
    status = {**STATUS, "agents": [{"uid": 1000, "notifications_silenced": True}]}
    assert levels(healthy(status=status))["notifications"] is Level.OK


def test_engines_are_asked_about_an_evenly_spaced_sample() -> None:
    names = [f"site{number:06}.example" for number in range(100_000)]
    chosen = checks.sample(names)
    assert len(chosen) == checks.SAMPLE_SIZE == len(set(chosen))
    assert chosen == checks.sample(list(reversed(names)))
    assert chosen[0] == "site000000.example" and chosen[-1].startswith("site08")
    assert checks.sample(["b.example", "a.example"]) == ["a.example", "b.example"]


def test_a_sample_of_lookups_says_so() -> None:
    looked = {f"site{number}.example": ("0.0.0.0", "::") for number in range(200)}
    report = checks.check_lookups(looked, 100_000, active=True)
    assert report.level is Level.OK and "a random sample of 200 of 100000" in report.message


def test_a_name_that_does_not_resolve_is_not_an_escape() -> None:
    report = checks.check_lookups({"twitter.com": None, "www.twitter.com": ("0.0.0.0", "::")}, 2, True)
    assert report.level is Level.WARN
    assert "1 did not resolve at all (nothing escapes" in report.message and "twitter.com" in report.message
    assert "escape the block" not in report.message


def test_a_line_of_ones_own_above_the_block_is_found() -> None:
    text = ("127.0.0.1 localhost\n104.244.42.1 twitter.com\n10.0.0.1 nas www.TWITTER.com # mine\n"
            "# 1.2.3.4 twitter.com\n# BEGIN detoxd block\n0.0.0.0 twitter.com\n:: twitter.com\n"
            "0.0.0.0 www.twitter.com\n:: www.twitter.com\n# END detoxd block\n")
    check = failed(healthy(hosts_text=text))["hosts overrides"]
    assert check.message.startswith("2 lines of /etc/hosts give blocked names")
    assert "line 2: 104.244.42.1 twitter.com; line 3: 10.0.0.1 www.TWITTER.com" in check.message
    fixed = text.replace("104.244", "# 104.244").replace("nas www.TWITTER.com", "nas")
    assert levels(healthy(hosts_text=fixed))["hosts overrides"] is Level.OK


def test_the_last_hosts_line_of_nsswitch_is_the_one_glibc_uses() -> None:
    assert "nsswitch" in failed(healthy(nsswitch="hosts: files dns\nhosts: dns files\n"))
    assert levels(healthy(nsswitch="hosts: dns files\nhosts: files dns\n"))["nsswitch"] is Level.OK


def test_output_formats() -> None:
    report = checks.evaluate(healthy(nsswitch="hosts: dns files\n"))
    text = checks.format_human(report)
    assert "[FAIL] nsswitch: hosts: dns files asks dns before files" in text
    assert "-> in /etc/nsswitch.conf put files before dns" in text
    assert text.endswith("The detox is NOT effective: 1 check failed.")
    document = json.loads(checks.format_json(report))
    assert document["effective"] is False
    assert {"name": "nsswitch", "level": "FAIL", "message": "hosts: dns files asks dns before files",
            "fix": "in /etc/nsswitch.conf put files before dns: hosts: files dns"} in document["checks"]


def test_policy_conflicts_are_found_in_managed_directories(tmp_path: Path) -> None:
    managed = tmp_path / "etc/opt/chrome/policies/managed"
    managed.mkdir(parents=True)
    (managed / "corp.json").write_text('{"DnsOverHttpsMode": "secure"}')
    (managed / "other.json").write_text('{"HomepageLocation": "https://example.org"}')
    (managed / "detoxd.json").write_text('{"DnsOverHttpsMode": "off"}')
    assert doctor._policy_conflicts(tmp_path) == {"chrome": ("/etc/opt/chrome/policies/managed/corp.json",)}


def test_resolved_configs_read_drop_ins_with_etc_overriding(tmp_path: Path) -> None:
    for directory, name, text in [("usr/lib/systemd/resolved.conf.d", "50-vendor.conf", "vendor"),
                                  ("etc/systemd/resolved.conf.d", "50-vendor.conf", "admin"),
                                  ("run/systemd/resolved.conf.d", "10-early.conf", "early")]:
        (tmp_path / directory).mkdir(parents=True)
        (tmp_path / directory / name).write_text(text)
    (tmp_path / "etc/systemd/resolved.conf").write_text("main")
    assert doctor._resolved_configs(tmp_path) == ("main", "early", "admin")


def test_lookups_stop_at_the_budget_once_the_minimum_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    # The scheduling only: the real resolver is the integration tests' (in their own namespace).
    monkeypatch.setattr(doctor, "_addresses", lambda name: ("0.0.0.0", "::"))
    names = [f"name{i}.example" for i in range(64)]
    assert doctor.look_up(names, budget=0.0, minimum=0) == {}
    assert set(doctor.look_up(names, budget=0.0, minimum=64)) == set(names)
    first, second = (list(doctor.look_up(names, budget=60.0)) for _ in range(2))
    assert sorted(first) == sorted(names) and first != second  # all, each run in a fresh order


PIHOLE_ROW = {"engine": "pihole", "url": "https://pi.hole", "state": "in_sync", "clients": 0,
              "names": 3, "last_ok": "2030-01-01T00:00:00+00:00", "error": None}
NULL = checks.dnswire.Answer("NOERROR", ("0.0.0.0",))


def test_household_engines_holding_the_detox_pass() -> None:
    facts = healthy(status={**STATUS, "network": [PIHOLE_ROW]},
                    engine_answers={"Pi-hole (pi.hole)": {"twitter.com": NULL, "www.twitter.com": NULL}})
    report = checks.evaluate(facts)
    assert report.effective, checks.format_human(report)
    check = next(c for c in report.checks if c.name == "engine Pi-hole (pi.hole)")
    assert check.message == "holds the detox: 2 sampled names blocked over DNS"


@pytest.mark.parametrize(("row", "answers", "expected"), [
    ({**PIHOLE_ROW, "state": "unreachable", "error": "https://pi.hole: connection refused"}, {},
     "Pi-hole (pi.hole): unreachable, retrying, 3 names (last ok 2030-01-01T00:00:00+00:00): "
     "https://pi.hole: connection refused"),
    ({**PIHOLE_ROW, "state": "no_agent"}, {}, "no network agent reports"),
    (PIHOLE_ROW, {"twitter.com": checks.dnswire.Answer("NOERROR", ("104.244.42.1",))},
     "answers 1 of 1 sampled blocked names normally over DNS: twitter.com"),
])
def test_household_engine_failures(row: dict[str, Any], answers: dict[str, Any], expected: str) -> None:
    facts = healthy(status={**STATUS, "network": [row]}, engine_answers={"Pi-hole (pi.hole)": answers})
    check = failed(facts)["engine Pi-hole (pi.hole)"]
    assert expected in check.message


def test_an_engine_scoped_to_clients_is_not_asked_from_here() -> None:
    row = {**PIHOLE_ROW, "clients": 2}
    assert doctor.ask_engines(Status.from_json({"network": [row]}), BLOCKED) == {}
    check = next(c for c in checks.evaluate(healthy(status={**STATUS, "network": [row]})).checks
                 if c.name.startswith("engine"))
    assert check.level is Level.OK and "dig @pi.hole" in check.message


def test_detox_check_fails_on_problems_and_warns_on_recovered_state() -> None:
    check_detox = checks.check_detox
    active = {"state": "active", "days_left": 3, "ends_at": "2026-12-15T10:00:00+00:00"}
    assert check_detox(Status.from_json(active)).level is Level.OK
    full = check_detox(Status.from_json({**active, "problems": ["cannot save the state: No space left"]}))
    assert full.level is Level.FAIL and "No space left" in full.message
    lost = check_detox(Status.from_json({**active, "state_error": "the detox state was lost"}))
    assert lost.level is Level.WARN and "state was lost" in lost.message
    planned = check_detox(Status.from_json({"state": "scheduled", "starts_at": "2026-12-14T09:00:00+00:00"}))
    assert planned.level is Level.FAIL and "planned to begin 2026-12-14T09:00:00+00:00" in planned.message
    assert planned.fix is not None and "begins by itself" in planned.fix


@pytest.mark.parametrize(("changes", "level", "words"), [
    ({"cutter_enabled": "enabled"}, Level.OK, "detoxd-cutter.path is enabled"),
    ({"cutter_enabled": "disabled"}, Level.WARN, "open connections to sites that are blocked again"),
    ({"cutter_enabled": ""}, Level.WARN, "is not installed"),
    ({"cutter_enabled": "enabled", "cutter_stuck": 2}, Level.WARN,
     "2 requests to the connection cutter wait "),
    ({"cutter_enabled": "enabled", "cutter_stuck": 1}, Level.WARN,
     "1 request to the connection cutter waits"),
    ({"cutter_enabled": None}, Level.SKIP, "cannot tell"),
])
def test_the_connection_cutter_is_checked_but_does_not_decide_effectiveness(
        changes: dict[str, Any], level: Level, words: str) -> None:
    report = checks.evaluate(healthy(**changes))
    [check] = [check for check in report.checks if check.name == "connection cutter"]
    assert check.level is level and words in check.message
    assert report.effective  # new connections are blocked either way


def test_held_time_is_a_warning_with_the_fix() -> None:
    held = {"seconds": 15 * 86400, "since": "2030-01-01T00:00:00+00:00", "reason": "no source confirms"}
    check = next(c for c in checks.evaluate(healthy(status={**STATUS, "time_held": held})).checks
                 if c.name == "detox clock")
    assert check.level is Level.WARN and "15.0 days since 2030-01-01" in check.message
    assert "timedatectl set-ntp true" in check.fix
    assert levels(healthy())["detox clock"] is Level.OK


@pytest.mark.parametrize(("changes", "level", "words"), [
    ({"status": {**STATUS, "apps_watch": "exec_events"}}, Level.OK, "closed at exec"),
    ({"execwatch_enabled": "enabled"}, Level.WARN, "polling /proc every second"),
    ({"execwatch_enabled": "disabled"}, Level.WARN, "detoxd-execwatch.service is disabled"),
    ({"execwatch_enabled": ""}, Level.WARN, "detoxd-execwatch.service is not installed"),
    ({"status": None, "daemon_error": "refused"}, Level.SKIP, "cannot tell"),
])
def test_doctor_says_how_blocked_apps_are_found(changes: dict[str, Any], level: Level, words: str) -> None:
    [check] = [check for check in checks.evaluate(healthy(**changes)).checks if check.name == "apps"]
    assert check.level is level and words in check.message
    assert level is not Level.WARN or "systemctl enable --now detoxd-execwatch.service" in check.fix


def test_in_a_container_doctor_does_not_send_the_user_to_enable_the_exec_watcher() -> None:
    """There the unit's condition keeps it from starting and no enabling would help."""
    [check] = [check for check in checks.evaluate(healthy(execwatch_enabled="enabled",
                                                          exec_events_possible=False)).checks
               if check.name == "apps"]
    assert check.level is Level.WARN and "in a container" in check.message
    assert "systemctl" not in check.fix and "on the host" in check.fix
    assert doctor._exec_events_possible(Path("/")) is execwatch.in_initial_namespaces()


def test_paths_are_checked_in_each_installed_browsers_policy() -> None:
    status = {**STATUS, "paths_blocked": ["linkedin.com/feed"]}
    firefox = {"policies": {**FIREFOX_ON["policies"], "WebsiteFilter": {"Block": ["*://*.linkedin.com/feed*"]}}}
    facts = healthy(status=status, policy_documents={
        "etc/firefox/policies/policies.json": firefox,
        "etc/opt/chrome/policies/managed/detoxd.json": {"DnsOverHttpsMode": "off"}})
    found = levels(facts)
    assert found["browser paths: firefox"] is Level.OK
    failure = failed(facts)["browser paths: chrome"]
    assert failure.message == ("URLBlocklist in /etc/opt/chrome/policies/managed/detoxd.json does not hold "
                               "every path of `paths:` (1)")
    assert "browser paths: chromium" not in found  # not installed: not listed
    assert not any(name.startswith("browser paths") for name in levels(healthy()))  # no paths: no check


def test_brave_edge_and_vivaldi_are_listed_with_a_fix_when_their_policy_is_missing() -> None:
    facts = healthy(browsers=InstalledBrowsers(("brave", "edge", "vivaldi"), ()), policy_documents={
        "etc/brave/policies/managed/detoxd.json": {"DnsOverHttpsMode": "off"}})
    assert levels(facts)["browser policies: brave"] is Level.OK
    failures = failed(facts)
    assert failures["browser policies: edge"].message == (
        "/etc/opt/edge/policies/managed/detoxd.json does not switch DNS-over-HTTPS off")
    assert "browser policies: vivaldi" in failures


def test_the_extension_is_checked_in_chromium_and_chrome() -> None:
    chrome_file = "etc/opt/chrome/policies/managed/detoxd.json"
    found = [check for check in checks.evaluate(healthy()).checks
             if check.name == "browser extension: chrome"]
    assert [(check.level, check.message) for check in found] == [
        (Level.OK, f"force-installed ({EXT_ID}), incognito and guest windows off, native host registered")]
    documents = {"etc/firefox/policies/policies.json": FIREFOX_ON}
    not_forced = failed(healthy(policy_documents={**documents, chrome_file: {"DnsOverHttpsMode": "off"}}))
    assert "does not force-install detoxd's extension" in not_forced["browser extension: chrome"].message
    incognito = failed(healthy(policy_documents={
        **documents, chrome_file: {**CHROME_ON, "IncognitoModeAvailability": 0}}))
    assert "incognito or guest windows are available" in incognito["browser extension: chrome"].message
    guest = failed(healthy(policy_documents={
        **documents, chrome_file: {**CHROME_ON, "BrowserGuestModeEnabled": True}}))
    assert "incognito or guest windows are available" in guest["browser extension: chrome"].message
    no_host = failed(healthy(extension_files={**EXTENSION_FILES, CHROME_HOST: None}))
    assert "the block page cannot ask the daemon" in no_host["browser extension: chrome"].message
    no_package = failed(healthy(extension_files={**EXTENSION_FILES,
                                                  "var/lib/detoxd/browser/chromium/detoxd.crx": False}))
    assert no_package["browser extension: chrome"].message == (
        "missing: /var/lib/detoxd/browser/chromium/detoxd.crx")
    idle = levels(healthy(status={**STATUS, "state": "idle", "days_left": None, "ends_at": None}))
    assert not any(name.startswith("browser extension") for name in idle)
    others = levels(healthy(browsers=InstalledBrowsers(("brave",), ())))
    assert not any(name.startswith("browser extension") for name in others)  # Chromium and Chrome only


def test_the_extension_is_checked_in_firefox() -> None:
    firefox_file = "etc/firefox/policies/policies.json"
    chrome = {"etc/opt/chrome/policies/managed/detoxd.json": CHROME_ON}
    found = [(check.level, check.message) for check in checks.evaluate(healthy()).checks
             if check.name.startswith("browser extension: firefox")]
    assert found == [(Level.OK, "force-installed (unsigned, signatures off by policy), in private windows "
                      "too, native host registered")]
    signed_only = json.loads(json.dumps(FIREFOX_ON))
    del signed_only["policies"]["Preferences"]
    refused = failed(healthy(policy_documents={**chrome, firefox_file: signed_only}))
    assert "xpinstall.signatures.required off" in refused["browser extension: firefox"].message
    public = json.loads(json.dumps(FIREFOX_ON))
    del public["policies"]["ExtensionSettings"]["browser@detoxd.org"]["private_browsing"]
    assert "private windows" in failed(healthy(policy_documents={**chrome, firefox_file: public}))[
        "browser extension: firefox"].message
    no_host = failed(healthy(extension_files={**EXTENSION_FILES, FIREFOX_HOST: None}))
    assert "the block page cannot ask the daemon" in no_host["browser extension: firefox"].message
    no_xpi = failed(healthy(extension_files={**EXTENSION_FILES, XPI: False}))
    assert no_xpi["browser extension: firefox"].message == f"missing: /{XPI}"
    release = checks.evaluate(healthy(extension_files={**EXTENSION_FILES, checks.FIREFOX_CHANNELS: {
        "/usr/lib/firefox-esr": "esr", "/usr/lib/firefox": "release"}})).checks
    warned = [check for check in release if check.name == "browser extension: firefox (/usr/lib/firefox)"]
    assert [check.level for check in warned] == [Level.WARN] and "refuses unsigned" in warned[0].message
    idle = levels(healthy(status={**STATUS, "state": "idle", "days_left": None, "ends_at": None}))
    assert not any(name.startswith("browser extension") for name in idle)


def test_doctor_reads_firefoxs_update_channel_and_the_extensions_files(tmp_path: Path) -> None:
    preferences = tmp_path / "usr/lib/firefox-esr/defaults/pref"
    preferences.mkdir(parents=True)
    (preferences / "channel-prefs.js").write_text('pref("app.update.channel", "esr");\n')
    host = tmp_path / FIREFOX_HOST
    host.parent.mkdir(parents=True)
    host.write_text('{"name": "org.detoxd.browser_host"}')
    found = doctor._firefox_extension_files(tmp_path)
    assert found[checks.FIREFOX_CHANNELS] == {"/usr/lib/firefox-esr": "esr"}
    assert found[FIREFOX_HOST] == {"name": "org.detoxd.browser_host"}
    assert found[XPI] is False
