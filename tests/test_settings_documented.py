"""Every setting is documented: an operator finds each `FLEET_*` variable in docs/."""

from __future__ import annotations

from pathlib import Path

from gigafactory.settings import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_setting_is_named_in_the_docs() -> None:
    text = "\n".join(p.read_text() for p in sorted(DOCS.rglob("*.md")))
    missing = [f"FLEET_{name.upper()}" for name in Settings.model_fields]
    missing = [variable for variable in missing if variable not in text]
    assert missing == [], f"settings not documented in docs/: {', '.join(missing)}"
