"""The docs a person reads: the README stays a short front door that opens with the two commands,
and no link in it or in docs/ leads nowhere (a file moved, a heading renamed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted([README, *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def headings(path: Path) -> set[str]:
    """GitHub's anchors for a page's headings (outside code blocks)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.*)", line)):
            slug = re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(f"{slug}-{count}" if count else slug)  # a repeated heading gets -1, -2 …
    return anchors


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return [a or b for a, b in LINK.findall(text)]


def test_the_readme_is_short_and_opens_with_the_two_commands() -> None:
    assert README.stat().st_size <= 16 * 1024
    first = README.read_text().splitlines()[:4]
    assert first[0] == "```sh" and first[3] == "```"
    assert first[1].split()[0] == "scripts/try" and first[2].split()[0] == "scripts/test"
    for script in ("try", "test"):
        assert (ROOT / "scripts" / script).stat().st_mode & 0o111
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_leads_somewhere(page: Path) -> None:
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in headings(path), f"{page.name}: {target}"


def test_the_readme_links_every_page_in_docs() -> None:
    linked = {Path(target.partition("#")[0]).name for target in links(README)}
    for page in (ROOT / "docs").glob("*.md"):
        assert page.name in linked, page.name


@pytest.mark.parametrize("page", [page for page in PAGES if len(page.read_bytes()) > 6000],
                         ids=lambda page: page.name)
def test_a_longer_page_has_a_table_of_contents(page: Path) -> None:
    anchors = headings(page)
    toc = [target for target in links(page) if target.startswith("#")]
    sections = [line for line in page.read_text().splitlines() if line.startswith("## ")]
    assert len(toc) >= len(sections) - 1 >= 1, page.name
    assert all(target[1:] in anchors for target in toc)
