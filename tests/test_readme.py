"""The README's promises: its rule table lists exactly the registered rules."""

from __future__ import annotations

import re

from conftest import REPO
from gpu_trace_analyzer.rules.all import load_builtin_rules


def _rule_table() -> dict[str, str]:
    """Rule id to its "fires when" text, from the table under the README's Rules heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n### Rules\n", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| (.+?) \|$", section, re.MULTILINE)
    table = dict(rows)
    assert len(table) == len(rows), "a rule is listed twice"
    return table


def test_readme_rule_table_matches_the_registry() -> None:
    table = _rule_table()
    registered = set(load_builtin_rules())
    assert sorted(set(table) - registered) == [], "README lists rules that do not exist"
    assert sorted(registered - set(table)) == [], "rules missing from the README's table"
    assert all(len(text.split()) >= 3 for text in table.values())
