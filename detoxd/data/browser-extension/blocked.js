// The block page: what is blocked and why, the detox's day and end, the next peer session and who
// is in the hot seat, the allowances with an open button. Everything comes from the daemon through
// the background (browser_check and status); opening goes through `open`, as `detoxd open` does.
"use strict";

const api = globalThis.browser ?? globalThis.chrome;
const blockedUrl = new URLSearchParams(location.search).get("url") || "";
const DAY_MS = 86400000;

function text(id, value) {
  const element = document.getElementById(id);
  element.textContent = value;
  return element;
}

function show(id, visible) {
  document.getElementById(id).hidden = !visible;
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function when(iso) {
  if (!iso) return "?";
  return new Date(iso).toLocaleString(undefined, {
    weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
  });
}

function describe(verdict) {
  let shown = blockedUrl;
  try {
    const url = new URL(blockedUrl);
    shown = url.host + (url.pathname === "/" ? "" : url.pathname);
  } catch (error) { /* shown as given */ }
  text("what", shown);
  if (!verdict.blocked) {
    return "It is not blocked now: go back and reload it.";
  }
  const rule = verdict.rule || "?";
  const why = verdict.kind === "path"
    ? `The path ${rule} is in your blocklist (paths:): the rest of the site stays open.`
    : `${rule} is a blocked name in your blocklist.`;
  return verdict.allowance
    ? `${why} The allowance “${verdict.allowance}” can open it.`
    : why;
}

function renderDetox(status) {
  if (status.state !== "active") {
    show("detox", false);
    return;
  }
  const total = status.days_total === null || status.days_total === undefined ? null : Math.round(status.days_total);
  let day = null;
  if (status.started_at) day = Math.floor((Date.now() - Date.parse(status.started_at)) / DAY_MS) + 1;
  const of = total === null ? "" : ` of ${total}`;
  const left = status.days_left === null || status.days_left === undefined ? "" : ` · ${plural(status.days_left, "day")} left`;
  text("day", `Day ${day === null ? "?" : day}${of}${left}`);
  text("ends", `The detox ends ${when(status.ends_at)}.`);
  show("detox", true);
}

function renderSession(status) {
  const session = status.next_session;
  const seat = status.current_hot_seat;
  if (!session && !seat) {
    show("session", false);
    return;
  }
  if (session) {
    const where = session.location ? ` at ${session.location}` : "";
    const now = session.in_progress ? "in progress now, " : "";
    text("session-when", `Session ${session.number}: ${now}${when(session.start)} – ${when(session.end)}${where}`);
  } else {
    text("session-when", "");
  }
  if (seat) {
    const next = seat.next_name ? ` (then ${seat.next_name})` : "";
    text("hot-seat", `In the hot seat now: ${seat.name}, seat ${seat.seat} of ${seat.of}${next}`);
  } else if (session && session.hot_seat) {
    text("hot-seat", `${session.in_progress ? "In the hot seat now" : "First in the hot seat"}: ${session.hot_seat}`);
  } else {
    text("hot-seat", "");
  }
  show("session", true);
}

function renderAllowances(status, verdict) {
  const list = document.getElementById("allowance-list");
  list.replaceChildren();
  const allowances = status.allowances || [];
  for (const allowance of allowances) {
    const item = document.createElement("li");
    item.dataset.allowance = allowance.name;
    const label = document.createElement("span");
    let detail;
    if (allowance.open) detail = `open until ${when(allowance.open_until)}`;
    else detail = `${plural(allowance.minutes_left_today, "minute")} left today`;
    if (allowance.opens_left_today !== null && allowance.opens_left_today !== undefined && !allowance.open) {
      detail += `, ${plural(allowance.opens_left_today, "open")} left`;
    }
    label.textContent = `${allowance.name}: ${detail}`;
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = allowance.open ? "Open" : "Open now";
    button.disabled = allowance.open || allowance.minutes_left_today <= 0;
    if (verdict.allowance === allowance.name) button.classList.add("opens-this");
    button.addEventListener("click", () => openAllowance(allowance.name, button));
    item.append(label, button);
    list.append(item);
  }
  show("allowances", allowances.length > 0);
}

async function openAllowance(name, button) {
  button.disabled = true;
  const reply = await api.runtime.sendMessage({ type: "open", name });
  if (reply && reply.ok) {
    text("open-result", `${name} is open.`);
    document.title = `Opened ${name} — detoxd`;
    const verdict = await api.runtime.sendMessage({ type: "page", url: blockedUrl });
    if (verdict && verdict.ok && !verdict.verdict.blocked && blockedUrl) location.replace(blockedUrl);
    else render();
  } else {
    text("open-result", `Not opened: ${(reply && reply.error) || "no answer from detoxd"}`);
    button.disabled = false;
  }
}

let rendering = false;

async function render() {
  if (rendering) return;
  rendering = true;
  try {
    const answer = await api.runtime.sendMessage({ type: "page", url: blockedUrl });
    if (!answer || !answer.ok || !answer.verdict.ok || !answer.status.ok) {
      const error = (answer && (answer.error || answer.verdict?.error || answer.status?.error)) || "no answer";
      text("problem", `detoxd cannot be asked right now (${error}); the block stays in force.`);
      show("problem", true);
      document.title = "Blocked — detoxd";
      return;
    }
    const status = answer.status.status;
    show("problem", false);
    text("why", describe(answer.verdict));
    renderDetox(status);
    renderSession(status);
    renderAllowances(status, answer.verdict);
    document.documentElement.dataset.state = "ready";
    document.title = `Blocked: ${document.getElementById("what").textContent} — detoxd`;
  } finally {
    rendering = false;
  }
}

api.runtime.onMessage.addListener((message) => {
  // The daemon's events (a status every few seconds among them): the page stays current.
  if (message && message.type === "detoxd-event") render();
});
render();
