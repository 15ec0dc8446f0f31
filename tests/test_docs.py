"""Every relative link in README.md, docs/*.md, benchmarks/README.md and HISTORY.md resolves.

A link is `[text](target)` or `![alt](target)` outside fenced code blocks; a relative target
must name a file that exists (relative to the page), and a `#anchor` must name a heading of
the target page, slugged as GitHub slugs headings. Web links are not fetched (no network).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         ROOT / "benchmarks" / "README.md", ROOT / "benchmarks" / "HISTORY.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def prose(text: str) -> str:
    """`text` without its fenced code blocks (a shell line `[x](y)` is not a link)."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return "\n".join(kept)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in prose(page.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            # GitHub numbers repeated headings: "usage", "usage-1", ...
            result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(page: Path, text: str) -> list[str]:
    broken = []
    for target in LINK.findall(prose(text)):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert page.exists()
    assert broken_links(page, page.read_text()) == []


def test_broken_links_are_found(tmp_path):
    """The checker itself: a missing file, a missing anchor and a good link."""
    (tmp_path / "other.md").write_text("# Some `code` heading: here\n")
    page = tmp_path / "page.md"
    text = ("[a](missing.md) [b](other.md#nope) [c](other.md#some-code-heading-here)\n"
            "```\n[not a link](nowhere.md)\n```\n[d](https://example.org/x)\n")
    broken = broken_links(page, text)
    assert len(broken) == 2
    assert broken[0].startswith("missing.md")
    assert broken[1].startswith("other.md#nope")


def test_the_readme_fits_on_one_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
