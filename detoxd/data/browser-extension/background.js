// detoxd's extension: the background of Chromium's service worker and Firefox's event page.
// It asks the daemon (through the native-messaging host org.detoxd.browser_host, which speaks the
// control socket's protocol as the user the browser runs as) whether a main-frame navigation is
// blocked; a blocked one is sent to the block page, and the attempt is counted. It also adds up
// the time the focused window's active tab spends on blocked names and paths and on allowance
// sites (nothing else), per local day, and sends the totals to the daemon (browser_time).
"use strict";

const api = globalThis.browser ?? globalThis.chrome;
const HOST = "org.detoxd.browser_host";
const CHECK_CACHE_MS = 3000;      // a verdict is reused this long (an event clears them all)
const TIME_FLUSH_MINUTES = 1;     // totals go to the daemon this often, and on leaving a counted site
const BLOCK_PAGE = api.runtime.getURL("blocked.html");

let port = null;
let nextId = 1;
const pending = new Map();        // request id -> {resolve, reject}
const verdicts = new Map();       // url -> {at, reply}
const redirected = new Map();     // tab id -> URLs being checked, or sent to the block page

// ---- the native host ----

function connect() {
  if (port !== null) return port;
  port = api.runtime.connectNative(HOST);
  port.onMessage.addListener(onHostMessage);
  port.onDisconnect.addListener((gone) => {
    const error = new Error((gone && gone.error && gone.error.message)
      || (api.runtime.lastError && api.runtime.lastError.message) || "the detoxd host went away");
    leaveIfHostRemoved(error.message);
    port = null;
    verdicts.clear();
    for (const waiting of pending.values()) waiting.reject(error);
    pending.clear();
  });
  return port;
}

// At a detox's end detoxd takes out its policies and the native host's manifest. Chromium then
// removes the extension by itself; Firefox keeps it (measured in firefox-esr 153: installed and
// active at the next starts, removable by the user), so there it removes itself once the host is
// gone. While the policy force-installs it, Firefox refuses that: nothing happens.
const HOST_REMOVED = /No such native application/;

function leaveIfHostRemoved(message) {
  if (HOST_REMOVED.test(message) && api.management && api.management.uninstallSelf) {
    api.management.uninstallSelf().catch(() => {});
  }
}

function onHostMessage(message) {
  if (message && Object.prototype.hasOwnProperty.call(message, "event")) {
    verdicts.clear();  // something changed in the daemon: ask again, and let block pages refresh
    api.runtime.sendMessage({ type: "detoxd-event", event: message.event }).catch(() => {});
    if (message.status && typeof message.status === "object") sweepIfChanged(message.status);
    return;
  }
  const waiting = message && pending.get(message.id);
  if (waiting) {
    pending.delete(message.id);
    const reply = Object.assign({}, message);
    delete reply.id;
    waiting.resolve(reply);
  }
}

function ask(cmd, args = {}) {
  return new Promise((resolve, reject) => {
    let connected;
    try {
      connected = connect();
    } catch (error) {
      reject(error);
      return;
    }
    const id = nextId++;
    pending.set(id, { resolve, reject });
    try {
      connected.postMessage(Object.assign({}, args, { id, cmd }));
    } catch (error) {
      pending.delete(id);
      reject(error);
    }
  });
}

// Firefox (runtime.getBrowserInfo is Firefox's): connected from the start, so an extension left
// over from an ended detox leaves at once, not at the first navigation.
if (api.runtime.getBrowserInfo) ask("status").catch(() => {});

async function check(url) {
  const known = verdicts.get(url);
  if (known && Date.now() - known.at < CHECK_CACHE_MS) return known.reply;
  const reply = await ask("browser_check", { url });
  if (reply.ok) verdicts.set(url, { at: Date.now(), reply });
  return reply;
}

function markRedirected(tabId, url, on) {
  let urls = redirected.get(tabId);
  if (!urls) redirected.set(tabId, urls = new Set());
  if (!on) {
    urls.delete(url);
  } else {
    if (urls.size >= 100) urls.clear();  // bounded: a tab that keeps trying
    urls.add(url);
  }
}

function wasRedirected(tabId, url) {
  const urls = redirected.get(tabId);
  return Boolean(urls && urls.has(url));
}

function isWeb(url) {
  return typeof url === "string" && (url.startsWith("http://") || url.startsWith("https://"));
}

// ---- navigations ----

// Firefox reports a navigation that changes process twice (the same tab and URL, 30-100 ms apart,
// measured in firefox-esr 153): both are sent to the block page, but it is one attempt.
const SAME_ATTEMPT_MS = 1000;
const lastAttempt = new Map();  // tab id -> {url, at}

function repeatedAttempt(details) {
  const last = lastAttempt.get(details.tabId);
  lastAttempt.set(details.tabId, { url: details.url, at: details.timeStamp });
  return last !== undefined && last.url === details.url && details.timeStamp - last.at < SAME_ATTEMPT_MS;
}

async function onNavigation(details) {
  if (details.frameId !== 0 || !isWeb(details.url)) return;
  markRedirected(details.tabId, details.url, true);  // not counted as time while it is decided
  let verdict;
  try {
    verdict = await check(details.url);
  } catch (error) {
    console.warn("detoxd: cannot ask the daemon:", error.message);
    return;  // the hosts file and the policies still block; only the page is missing
  }
  if (!verdict.ok || !verdict.blocked) {
    markRedirected(details.tabId, details.url, false);
    retarget();
    return;
  }
  const page = `${BLOCK_PAGE}?url=${encodeURIComponent(details.url)}`;
  await api.tabs.update(details.tabId, { url: page }).catch(() => {});
  if (!repeatedAttempt(details)) ask("browser_attempt", { url: details.url }).catch(() => {});
}

// Tabs already showing a site when it becomes blocked (the detox starts, and with it this
// extension; an allowance closes): the hosts file stops new connections only, so each open tab
// is checked again whenever what is blocked changes. Its block page counts as an attempt, as every
// block page shown does: a navigation under way when the sweep comes may never report its own
// onBeforeNavigate (measured in chromium 156: the sweep's update supersedes it).
let blockedShape = null;

function sweepIfChanged(status) {
  const shape = JSON.stringify([status.state, status.domains_blocked, status.paths_blocked,
    (status.allowances || []).map((allowance) => [allowance.name, allowance.open])]);
  if (shape === blockedShape) return;
  blockedShape = shape;
  api.tabs.query({}).then((tabs) => {
    for (const tab of tabs) {
      if (isWeb(tab.url) && !wasRedirected(tab.id, tab.url)) {
        onNavigation({ frameId: 0, tabId: tab.id, url: tab.url, timeStamp: Date.now() });
      }
    }
  }).catch(() => {});
}

api.webNavigation.onBeforeNavigate.addListener(onNavigation);
api.tabs.onRemoved.addListener((tabId) => lastAttempt.delete(tabId));

// ---- the block page's questions ----

api.runtime.onMessage.addListener((message, sender, sendResponse) => {
  if (!message || typeof message.type !== "string" || sender.id !== api.runtime.id) return false;
  let answer;
  if (message.type === "page") {
    answer = Promise.all([ask("browser_check", { url: String(message.url) }), ask("status")])
      .then(([verdict, status]) => ({ ok: true, verdict, status }));
  } else if (message.type === "open") {
    answer = ask("open", { name: String(message.name) }).then((reply) => {
      verdicts.clear();
      return reply;
    });
  } else {
    return false;
  }
  answer.catch((error) => ({ ok: false, error: error.message })).then(sendResponse);
  return true;  // answered asynchronously
});

// ---- time on blocked names, paths and allowance sites ----

let current = null;  // {key, since, tabId, url}: the focused active tab now (key null: not counted)
let totals = { day: localDay(new Date()), seconds: {} };
const restored = api.storage.local.get("detoxdTime").then((stored) => {
  const saved = stored && stored.detoxdTime;
  if (saved && saved.day === totals.day) {
    for (const [key, seconds] of Object.entries(saved.seconds || {})) {
      totals.seconds[key] = (totals.seconds[key] || 0) + seconds;
    }
  }
}).catch(() => {});

function localDay(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function addElapsed(now) {
  if (current === null) return;
  const seconds = Math.max(0, (now - current.since) / 1000);
  current.since = now;
  // Not counted: a URL that went to the block page after all (tabs.onUpdated may come first).
  if (current.key === null || seconds === 0 || wasRedirected(current.tabId, current.url)) return;
  const day = localDay(new Date(now));
  if (day !== totals.day) {
    flush();  // the old day's totals first
    totals = { day, seconds: {} };
  }
  totals.seconds[current.key] = (totals.seconds[current.key] || 0) + seconds;
}

async function keyFor(tab) {
  // The block page is not time on the site (the journal counts it as an attempt), nor the
  // browser's error page for a URL on its way there.
  const url = tab.url;
  if (!isWeb(url) || wasRedirected(tab.id, url)) return null;
  const verdict = await check(url);
  if (!verdict.ok) return null;
  // Blocked, yet shown (a tab opened before the block): counted once it has loaded. Before that
  // the URL may be on its way to the block page (tabs.onUpdated may come before onBeforeNavigate).
  if (verdict.blocked) return tab.status === "complete" ? verdict.rule || null : null;
  return verdict.allowance || null;  // an allowance site, open now
}

let retargeting = Promise.resolve();

function retarget() {
  retargeting = retargeting.then(async () => {
    const now = Date.now();
    addElapsed(now);
    let key = null;
    let shown = null;
    try {
      const windows = await api.windows.getLastFocused({ populate: true });
      if (windows && windows.focused) {
        shown = (windows.tabs || []).find((each) => each.active) || null;
        if (shown) key = await keyFor(shown);
      }
    } catch (error) {
      key = null;
    }
    const left = current !== null && current.key !== null && current.key !== key;
    current = { key, since: Date.now(), tabId: shown && shown.id, url: shown && shown.url };
    if (left) flush();  // and at the alarm (the daemon's journal budget bounds how often)
  }).catch(() => {});
  return retargeting;
}

async function flush() {
  await restored;
  const seconds = {};  // whole seconds, rounded up: the running totals stay exact here
  for (const [key, value] of Object.entries(totals.seconds)) seconds[key] = Math.ceil(value);
  if (Object.keys(seconds).length === 0) return;
  await api.storage.local.set({ detoxdTime: { day: totals.day, seconds: totals.seconds } }).catch(() => {});
  await ask("browser_time", { day: totals.day, seconds }).catch(() => {});
}

api.tabs.onActivated.addListener(() => retarget());
api.tabs.onRemoved.addListener((tabId) => redirected.delete(tabId));
api.tabs.onUpdated.addListener((tabId, change, tab) => {
  if (tab.active && (change.url || change.status === "complete")) retarget();
});
api.windows.onFocusChanged.addListener(() => retarget());
api.alarms.create("detoxd-time", { periodInMinutes: TIME_FLUSH_MINUTES });
api.alarms.onAlarm.addListener((alarm) => {
  if (alarm.name !== "detoxd-time") return;
  retarget().then(flush);
});

// Connect at once: the daemon's events then reach this worker, and the connection keeps it alive.
try {
  connect();
} catch (error) {
  console.warn("detoxd: no native host:", error.message);
}
retarget();
