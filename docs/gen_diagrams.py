"""Regenerate the state diagrams in docs/ from the ``transitions`` machines.

    python docs/gen_diagrams.py

A test (tests/smproto/test_state.py) fails when a committed diagram is stale.
"""

from __future__ import annotations

from pathlib import Path

from smproto._state import mermaid_diagram

DOCS = Path(__file__).resolve().parent


def main() -> None:
    for role in ("client",):
        path = DOCS / f"{role}-states.mmd"
        path.write_text(mermaid_diagram(role))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
