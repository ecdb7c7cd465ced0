"""Regenerate the state diagrams and rules tables in docs/ from the ``transitions`` machines.

    python docs/gen_diagrams.py

A test (tests/smproto/test_state.py) fails when a committed diagram is stale.
"""

from __future__ import annotations

from pathlib import Path

from smproto._state import mermaid_diagram, rules_markdown

DOCS = Path(__file__).resolve().parent


def main() -> None:
    for role in ("client", "server", "session"):
        for path, text in (
            (DOCS / f"{role}-states.mmd", mermaid_diagram(role)),
            (DOCS / f"{role}-rules.md", rules_markdown(role)),
        ):
            path.write_text(text)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
