"""`detoxd report --html FILE`: the report as one self-contained page with charts.

The charts are drawn with matplotlib (Debian's python3-matplotlib) and embedded as inline SVG;
the page loads nothing (a Content-Security-Policy forbids it) and runs no script, so it can be
opened from a file, mailed, or archived. Input is the ``report --json`` document
(:mod:`detoxd.core.report`); only this module imports matplotlib, and only when called.

matplotlib is optional (the package only Suggests it: with its own dependencies it is most of
what an install would download). Without it the page is still written, with everything but the
charts: the summary, the tiles, the time per site and the day-by-day table (shown open), and a
note saying how to get the charts.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from detoxd.core.report import days_measured, duration_text

BEFORE_COLOUR = "#e07a5f"  # warm: the time the detox is about
DURING_COLOUR = "#3d9970"  # green: the detox
ATTEMPT_COLOUR = "#577590"
BLOCK_PAGE_COLOUR = "#8e7dbe"
TAMPER_COLOUR = "#c0392b"
APPS_COLOUR = "#f2a541"
GRID_COLOUR = "#e6e6e6"
TEXT_COLOUR = "#333333"


NO_CHARTS = ("The charts need matplotlib, which is not installed: "
             "sudo apt install python3-matplotlib (or pip install matplotlib), then make the page again. "
             "Everything else is here; the day-by-day table below has every figure.")


class ChartsUnavailable(Exception):
    """matplotlib is not installed. :func:`render` no longer raises it (the page is written
    without charts); kept for callers that still catch it."""


def charts_available() -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    del matplotlib
    return True


SOURCE_WORDS = {"activitywatch": "from ActivityWatch", "browser": "from the browser extension",
                "activitywatch and browser": "from ActivityWatch, else the browser extension"}


def render(document: Mapping[str, Any]) -> str:
    """The whole page; without matplotlib, the page without its charts (see NO_CHARTS)."""
    charts = charts_available()
    sections = [_header(document)]
    if document.get("detox") is not None:
        sections.append(_tiles(document))
        if charts:
            sections += [_time_chart(document), _attempts_chart(document), _sites_chart(document)]
        else:
            sections += [f"<section><div class=note>{html.escape(NO_CHARTS)}</div></section>",
                         _activitywatch_note(document), _sites_table(document)]
        sections += [_sessions(document), _table(document, shown=not charts)]
    sections.append(_schedule(document))  # weekly block windows: detox or not
    sections.append(_footer(document))
    return _PAGE.format(title=html.escape(_title(document)), body="\n".join(s for s in sections if s))


# ---- sections ----

def _title(document: Mapping[str, Any]) -> str:
    detox = document.get("detox")
    if not detox:
        return "detoxd report"
    return f"detoxd report: the detox from {detox['started_at'][:10]}"


def _header(document: Mapping[str, Any]) -> str:
    detox = document.get("detox")
    when = ""
    if detox:
        state = "over" if detox["state"] == "over" else "running"
        until = detox["ended_at"] or detox["ends_at"]
        when = f"<p class=when>{_when(detox['started_at'])} → {_when(until)} · {state}</p>"
    return (f"<header><h1>Your networking time, audited</h1>{when}"
            f"<p class=summary>{html.escape(str(document.get('summary') or ''))}</p></header>")


def _when(moment: Any) -> str:
    """An ISO time as "2026-11-17 09:00" (the page is read, not parsed)."""
    return html.escape(str(moment or "")[:16].replace("T", " "))


def _tiles(document: Mapping[str, Any]) -> str:
    before, during = document["totals"]["before"], document["totals"]["during"]
    tiles = []
    if during["blocked_site_seconds"] is not None or before["blocked_site_seconds"] is not None:
        # Per day ActivityWatch watched: a day before it was installed is not a day of 0 minutes.
        per_during = (during["blocked_site_seconds"] or 0) / max(1, days_measured(during))
        if before["blocked_site_seconds"] is None:
            compared = "nothing from before to compare"
        else:
            per_before = before["blocked_site_seconds"] / max(1, days_measured(before))
            compared = f"vs {_minutes(per_before)} a day before"
        source = (document.get("site_time") or {}).get("source")
        if source and source != "activitywatch":
            compared += f" ({SOURCE_WORDS[source]})"
        tiles.append(_tile(_minutes(per_during), "a day on blocked sites during the detox", compared,
                           DURING_COLOUR))
    tiles.append(_tile(str(during["tamper_attempts"]), "tamper attempts undone", "", TAMPER_COLOUR))
    closed = sum(during["apps_closed"].values())
    tiles.append(_tile(str(closed), "apps closed",
                       ", ".join(f"{app[:1].upper()}{app[1:]} {count}"
                                 for app, count in list(during["apps_closed"].items())[:3]),
                       APPS_COLOUR))
    if during["blocked_lookups"] is not None:
        tiles.append(_tile(str(during["blocked_lookups"]), "blocked lookups", "by the household's DNS",
                           ATTEMPT_COLOUR))
    if during.get("browser_attempts") is not None:
        tiles.append(_tile(str(during["browser_attempts"]), "block pages shown", "by the browser extension",
                           BLOCK_PAGE_COLOUR))
    if during["allowance_minutes"]:
        tiles.append(_tile(f"{round(during['allowance_minutes'])} min", "of allowances used", "", "#8e7dbe"))
    return "<section class=tiles>" + "".join(tiles) + "</section>"


def _tile(number: str, label: str, detail: str, colour: str) -> str:
    return (f"<div class=tile style='border-top-color:{colour}'><div class=number>{html.escape(number)}</div>"
            f"<div class=label>{html.escape(label)}</div><div class=detail>{html.escape(detail)}</div></div>")


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else duration_text(seconds)


def _activitywatch_note(document: Mapping[str, Any]) -> str:
    activitywatch, site_time = document["activitywatch"], document.get("site_time") or {}
    if site_time.get("source") not in (None, "activitywatch"):
        message = site_time["message"]  # the browser extension's time stands in
    elif activitywatch["available"]:
        return ""
    else:
        message = activitywatch["message"]
    return ("<section><h2>Time on blocked sites</h2><div class=note>"
            f"{html.escape(str(message))}</div></section>")


def _time_chart(document: Mapping[str, Any]) -> str:
    days = document["days"]
    source = (document.get("site_time") or {}).get("source")
    if not document["activitywatch"]["available"] and source is None:
        return _activitywatch_note(document)
    figure, axes = _figure(10, 3.6)
    labels = [row["date"][5:] for row in days]
    minutes = [(row["blocked_site_seconds"] or 0) / 60 for row in days]
    colours = [BEFORE_COLOUR if row["phase"] == "before" else DURING_COLOUR for row in days]
    axes.bar(range(len(days)), minutes, color=colours, width=0.8)
    for phase, colour in (("before", BEFORE_COLOUR), ("during", DURING_COLOUR)):
        indices = [i for i, row in enumerate(days) if row["phase"] == phase]
        if indices:
            average = sum(minutes[i] for i in indices) / len(indices)
            axes.hlines(average, indices[0] - 0.4, indices[-1] + 0.4, colors=colour, linestyles="dashed",
                        linewidth=1.5)
            axes.annotate(f"{average:.0f} min/day", (indices[-1] + 0.4, average), fontsize=9, color=colour,
                          ha="right", va="bottom", xytext=(0, 3), textcoords="offset points")
    start = next((i for i, row in enumerate(days) if row["phase"] == "during"), None)
    if start is not None:
        axes.axvline(start - 0.5, color="#999999", linewidth=1)
        axes.annotate("detox starts", (start - 0.5, 1), xycoords=("data", "axes fraction"), fontsize=9,
                      color="#666666", ha="left", va="top", xytext=(4, -2), textcoords="offset points")
    _day_axis(axes, labels)
    axes.set_ylabel("minutes")
    return _section("Time on blocked sites, day by day",
                    f"<span style='color:{BEFORE_COLOUR}'>■</span> the {start or 0} days before · "
                    f"<span style='color:{DURING_COLOUR}'>■</span> during the detox "
                    f"({SOURCE_WORDS.get(source or 'activitywatch', 'from ActivityWatch')})", _svg(figure))


def _attempts_chart(document: Mapping[str, Any]) -> str:
    during = [row for row in document["days"] if row["phase"] == "during"]
    if not during:
        return ""
    figure, axes = _figure(10, 3.0)
    positions = range(len(during))
    tamper = [row["tamper_attempts"] for row in during]
    closed = [sum(row["apps_closed"].values()) for row in during]
    lookups = [row["blocked_lookups"] or 0 for row in during]
    pages = [row.get("browser_attempts") or 0 for row in during]
    bottom = [0.0] * len(during)
    series = [("tamper attempts", tamper, TAMPER_COLOUR), ("apps closed", closed, APPS_COLOUR)]
    if any(row["blocked_lookups"] is not None for row in during):
        series.insert(0, ("blocked lookups", lookups, ATTEMPT_COLOUR))
    if any(row.get("browser_attempts") is not None for row in during):
        series.insert(0, ("block pages shown", pages, BLOCK_PAGE_COLOUR))
    for label, values, colour in series:
        axes.bar(positions, values, bottom=bottom, color=colour, width=0.7, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.legend(frameon=False, fontsize=9, loc="upper right", ncol=len(series))
    _day_axis(axes, [row["date"][5:] for row in during])
    axes.set_ylim(0, max(1, *bottom) * 1.25)
    axes.yaxis.get_major_locator().set_params(integer=True)
    return _section("What the detox stopped", "each day of the detox", _svg(figure))


def _top_sites(document: Mapping[str, Any]) -> list[tuple[str, list[float]]]:
    """The 8 blocked sites with the most time, before and during (seconds), most first."""
    totals: dict[str, list[float]] = {}
    for row in document["days"]:
        for name, seconds in row["sites"].items():
            totals.setdefault(name, [0.0, 0.0])[0 if row["phase"] == "before" else 1] += seconds
    return sorted(totals.items(), key=lambda item: -(item[1][0] + item[1][1]))[:8]


def _sites_table(document: Mapping[str, Any]) -> str:
    top = _top_sites(document)
    if not top:
        return ""
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{_cell(before)}</td><td>{_cell(during)}</td></tr>"
                   for name, (before, during) in top)
    return ("<section><h2>Where the time went</h2><p class=caption>blocked sites only: nothing else "
            "you browsed is recorded</p><table><tr><th>site</th><th>before</th><th>during</th></tr>"
            + rows + "</table></section>")


def _sites_chart(document: Mapping[str, Any]) -> str:
    top = _top_sites(document)[::-1]
    if not top:
        return ""
    figure, axes = _figure(10, 0.45 * len(top) + 1.0)
    positions = range(len(top))
    axes.barh([p + 0.2 for p in positions], [before / 3600 for _, (before, _) in top], height=0.4,
              color=BEFORE_COLOUR, label="before")
    axes.barh([p - 0.2 for p in positions], [during / 3600 for _, (_, during) in top], height=0.4,
              color=DURING_COLOUR, label="during")
    axes.set_yticks(list(positions), [name for name, _ in top])
    axes.set_xlabel("hours")
    axes.legend(frameon=False, fontsize=9, loc="lower right")
    axes.grid(axis="x", color=GRID_COLOUR)
    axes.grid(axis="y", visible=False)
    return _section("Where the time went", "blocked sites only: nothing else you browsed is recorded",
                    _svg(figure))


def _sessions(document: Mapping[str, Any]) -> str:
    sessions = document.get("sessions") or []
    if not sessions:
        return ""
    items = []
    for session in sessions:
        people = " → ".join(html.escape(seat["person"]) for seat in session["hot_seats"])
        items.append(f"<li><b>Session {session['session']}</b> "
                     f"({_when(session['started_at'])}): {people or 'no hot seats yet'}</li>")
    return "<section><h2>Peer sessions</h2><ul class=sessions>" + "".join(items) + "</ul></section>"


def _table(document: Mapping[str, Any], shown: bool = False) -> str:
    head = ("<tr><th>date</th><th></th><th>blocked sites</th><th>blocked apps</th><th>lookups</th>"
            "<th>tamper</th><th>apps closed</th><th>allowances</th></tr>")
    rows = []
    for row in document["days"]:
        closed = ", ".join(f"{html.escape(app)} {count}" for app, count in row["apps_closed"].items())
        lookups = "–" if row["blocked_lookups"] is None else str(row["blocked_lookups"])
        rows.append(
            f"<tr class={row['phase']}><td>{row['date']}</td><td>{row['phase']}</td>"
            f"<td>{_cell(row['blocked_site_seconds'])}</td><td>{_cell(row['blocked_app_seconds'])}</td>"
            f"<td>{lookups}</td><td>{row['tamper_attempts'] or ''}</td><td>{closed}</td>"
            f"<td>{round(row['allowance_minutes']) or ''}</td></tr>")
    opened = " open" if shown else ""
    return (f"<section><details{opened}><summary>Day by day</summary><table>" + head + "".join(rows)
            + "</table></details></section>")


def _schedule(document: Mapping[str, Any]) -> str:
    """Scheduled hours per day next to the blocked attempts inside the windows (schedule:)."""
    days = document.get("schedule") or []
    if not days:
        return ""
    rows = "".join(f"<tr><td>{html.escape(str(row['date']))}</td>"
                   f"<td>{_cell(float(row['scheduled_hours']) * 3600)}</td>"
                   f"<td>{int(row['attempts_in_windows']) or ''}</td></tr>" for row in days)
    continues = document.get("continues") or []
    after = (f"<p>Continuing after the detox: {html.escape(', '.join(map(str, continues)))}</p>"
             if continues else "")
    return ("<section><h2>Block windows</h2>" + after + "<table><tr><th>date</th><th>scheduled</th>"
            "<th>blocked attempts inside</th></tr>" + rows + "</table></section>")


def _cell(seconds: float | None) -> str:
    return "–" if seconds is None else duration_text(seconds)


def _scope_text(scope: str) -> str:
    if scope == "all":
        return "as root sees it: every user's data"
    return f"as {html.escape(scope)} sees it: your own data and the system's"


def _footer(document: Mapping[str, Any]) -> str:
    stats = document.get("journal") or {}
    lost = stats.get("lost_events") or 0
    notes = [f"generated {_when(document.get('generated_at'))}",
             _scope_text(str(document.get("scope", ""))),
             f"{stats.get('events', 0)} journal events"]
    if stats.get("corrupt_lines"):
        notes.append(f"{stats['corrupt_lines']} unreadable journal lines skipped")
    if lost:
        notes.append(f"{lost} events lost while the disk was full")
    return "<footer>" + " · ".join(notes) + "</footer>"


# ---- matplotlib ----

def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=96)
    axes = figure.add_subplot()
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.spines["left"].set_color("#bbbbbb")
    axes.spines["bottom"].set_color("#bbbbbb")
    axes.tick_params(colors=TEXT_COLOUR, labelsize=9)
    axes.grid(axis="y", color=GRID_COLOUR)
    axes.set_axisbelow(True)
    return figure, axes


def _day_axis(axes: Any, labels: Sequence[str]) -> None:
    step = max(1, math.ceil(len(labels) / 15))  # at most 15 dates: they must not overlap
    axes.set_xticks(range(0, len(labels), step), labels[::step], rotation=0)
    axes.set_xlim(-0.6, len(labels) - 0.4)


def _svg(figure: Any) -> str:
    import matplotlib

    figure.tight_layout()
    buffer = io.StringIO()
    # Text stays text (small, selectable); a fixed salt makes the same report the same bytes.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "detoxd",
                                "font.family": "DejaVu Sans"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "detoxd"})
    text = buffer.getvalue()
    text = re.sub(r"^.*?(<svg\b)", r"\1", text, count=1, flags=re.DOTALL)  # drop the XML prologue
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.DOTALL)  # and the RDF


def _section(title: str, caption: str, content: str) -> str:
    return (f"<section><h2>{html.escape(title)}</h2><p class=caption>{caption}</p>"
            f"<div class=chart>{content}</div></section>")


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ font-family: "DejaVu Sans", system-ui, sans-serif; color: #333; background: #f6f5f2;
         margin: 0; padding: 2rem 1rem; }}
  main {{ max-width: 980px; margin: 0 auto; }}
  header h1 {{ font-weight: 600; margin: 0 0 .2rem; font-size: 1.7rem; }}
  .when {{ color: #777; margin: 0 0 1rem; }}
  .summary {{ font-size: 1.25rem; line-height: 1.5; background: #fff; border-radius: 10px;
              padding: 1rem 1.3rem; border-left: 6px solid #3d9970; margin: 0 0 1.5rem; }}
  section.tiles {{ display: flex; gap: 1rem; flex-wrap: wrap; background: none; padding: 0; }}
  .tile {{ flex: 1 1 140px; box-sizing: border-box; background: #fff; border-radius: 10px;
           padding: .9rem 1rem; border-top: 5px solid #999; }}
  .number {{ font-size: 2rem; font-weight: 700; }}
  .label {{ color: #555; }}
  .detail {{ color: #888; font-size: .85rem; margin-top: .2rem; }}
  section {{ background: #fff; border-radius: 10px; padding: 1rem 1.3rem; margin-bottom: 1.5rem; }}
  h2 {{ font-size: 1.15rem; margin: 0 0 .2rem; }}
  .caption {{ color: #777; margin: 0 0 .5rem; font-size: .9rem; }}
  .chart svg {{ width: 100%; height: auto; }}
  .note {{ background: #fff8e6; border-radius: 8px; padding: .8rem 1rem; line-height: 1.5; }}
  table {{ border-collapse: collapse; width: 100%; font-size: .85rem; margin-top: .6rem; }}
  th, td {{ text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eee; }}
  tr.before td {{ color: #888; }}
  details summary {{ cursor: pointer; font-weight: 600; }}
  footer {{ color: #999; font-size: .8rem; text-align: center; }}
</style>
</head>
<body><main>
{body}
</main></body>
</html>
"""
