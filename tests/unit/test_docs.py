"""The README is a quick start that stays true; the reference in docs/ has no dead link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from streams.config import parse_destinations

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_is_a_quick_start() -> None:
    lines = README.splitlines()
    assert len(lines) <= 150
    assert "`pip install -e . && courier demo`" in lines[1]
    assert "`pip install -e '.[test]' && pytest`" in lines[2]


def test_the_readmes_destinations_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", "a-key-for-the-example")
    (example,) = re.findall(r"```yaml\n(.*?)```", README, re.S)
    parsed = parse_destinations(yaml.safe_load(example), "README.md")
    assert [d.id for d in parsed.destinations] == ["acme_crm"]


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_every_link_stays_in_the_repository_and_finds_its_file(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://")):
            continue
        resolved = (page.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{page.name} links outside: {target}"
        assert resolved.exists(), f"{page.name}: {target} does not exist"


def test_every_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert all(f": {page.name}" in nav for page in PAGES)


def test_every_worked_example_is_a_valid_destinations_file() -> None:
    from streams.secrets import without_secret_values

    examples = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "examples.md").read_text(), re.S)
    assert len(examples) >= 7
    for example in examples:
        with without_secret_values():
            parsed = parse_destinations(yaml.safe_load(example), "docs/examples.md")
        assert parsed.destinations
