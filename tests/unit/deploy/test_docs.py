"""The runbook has a section for every alert, and the docs link only to files that exist."""

from __future__ import annotations

import re

import yaml
from tests.unit.deploy import embedded
from tests.unit.deploy.conftest import ROOT

DOCS = ROOT / "docs"


def anchors(markdown: str) -> set[str]:
    # GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes.
    headings = re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_every_alert_links_to_a_runbook_section() -> None:
    sections = anchors((DOCS / "runbook.md").read_text())
    rules = yaml.safe_load(embedded.RULES.read_text())["groups"][0]["rules"]
    assert rules
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/runbook.md", url
        assert anchor == rule["alert"].lower(), url
        assert anchor in sections, url


def test_relative_links_in_the_docs_resolve() -> None:
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.name}: {target}"
