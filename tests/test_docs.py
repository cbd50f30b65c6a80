"""The project's text: every relative link and image in a tracked Markdown file resolves (file and, for a
Markdown target, its heading anchor), the README stays short, and no tracked text outside tests/ carries a
calendar date (git log is the history)."""

import re
import subprocess
import sys
import unicodedata
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250

ISO_DATE = re.compile(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b")
# Dates that are part of a third-party file or network name, not an account of when something was done.
DATE_ALLOWED = ("inception-2015-12-05", "tf-2015-12-05")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+).+?\1", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_REF = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


@cache
def git_ls_files(*patterns: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", *patterns], cwd=ROOT, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p and (ROOT / p).is_file()]


def tracked_markdown() -> list[str]:
    try:
        return git_ls_files("*.md")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked sdist): nothing to check
        return []


def strip_code(text: str) -> str:
    """Markdown without fenced blocks and inline code spans, where a `[x](y)` is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set(EXPLICIT_ANCHOR.findall(text))
    for heading in HEADING.findall(text):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def targets(path: Path) -> list[str]:
    text = strip_code(path.read_text(encoding="utf-8"))
    return LINK.findall(text) + HTML_REF.findall(text)


def broken_links(md: str) -> list[str]:
    source = ROOT / md
    broken = []
    for target in targets(source):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        if file_part:
            base = ROOT if file_part.startswith("/") else source.parent
            resolved = (base / file_part.lstrip("/")).resolve()
        else:
            resolved = source
        if not resolved.exists():
            broken.append(f"{md}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor.lower() not in anchors(resolved):
            broken.append(f"{md}: {target} (no heading with anchor #{anchor} in {resolved.relative_to(ROOT)})")
    return broken


@pytest.mark.parametrize("md", tracked_markdown())
def test_every_relative_link_and_image_resolves(md):
    assert broken_links(md) == []


def test_the_link_check_sees_a_broken_link_an_image_and_an_anchor(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## The σ/α grid (20 NFE)\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "[ok](docs/page.md#the-σα-grid-20-nfe) [gone](docs/none.md) ![pic](docs/fig.png)\n"
        "[bad anchor](docs/page.md#nope) [web](https://example.org/x.md) `[code](not/a/link.md)`\n"
        "```\n[fenced](not/a/link.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links("README.md") == [
        "README.md: docs/none.md (no such file)",
        "README.md: docs/fig.png (no such file)",
        "README.md: docs/page.md#nope (no heading with anchor #nope in docs/page.md)",
    ]


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES}"


def dated_lines(paths: list[str]) -> list[str]:
    hits = []
    for rel in paths:
        data = (ROOT / rel).read_bytes()
        if b"\0" in data[:8192]:  # binary: images, archives
            continue
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            rest = line
            for allowed in DATE_ALLOWED:
                rest = rest.replace(allowed, "")
            if ISO_DATE.search(rest):
                hits.append(f"{rel}:{number}: {line.strip()[:100]}")
    return hits


def test_no_calendar_dates_in_tracked_text_outside_tests():
    try:
        paths = git_ls_files()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = [p for p in paths if not p.startswith("tests/") and not p.startswith("docs/report/")]
    assert dated_lines(paths) == []


def test_the_date_check_sees_a_date(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("measured on 2031-04-09\nweights-inception-2015-12-05.pth\n", encoding="utf-8")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\0 2031-04-09")
    assert dated_lines(["a.md", "b.png"]) == ["a.md:1: measured on 2031-04-09"]
