"""Lines of code of each client driver, before and after the drivers became pumps around
``smproto.session.ClientSession``, as a markdown table.

    python bench/loc.py [--before a10e839] [--after HEAD] [--worktree]

Two counts per file: ``wc -l`` (every line), and code lines: lines holding a token that
is not a comment, with the docstrings (of the module, classes and functions) left out,
blank lines too. Files are read from git (``git show REV:PATH``, which changes
nothing); ``--worktree`` reads the "after" files from the checkout instead, uncommitted
changes included. Before the refactor there was no threads driver: its row compares
with the threads example of then (``docs/examples/threads_client.py``, a hand-written
pump around the engine for one file). The rows below the drivers are the code they share, which the
refactor grew: the sans-IO session, and the IO helpers.
"""

from __future__ import annotations

import argparse
import ast
import io
import subprocess
import tokenize
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (what, files before, files after)
ROWS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (
        "smproto_asyncio",
        ("drivers/smproto_asyncio/session.py",),
        ("drivers/smproto_asyncio/session.py",),
    ),
    ("smproto_trio", ("drivers/smproto_trio/session.py",), ("drivers/smproto_trio/session.py",)),
    (
        "smproto_sync (before: the threads example)",
        ("docs/examples/threads_client.py",),
        ("drivers/smproto_sync/session.py",),
    ),
    (
        "smproto_livekit pump",
        ("drivers/smproto_livekit/_pump.py",),
        ("drivers/smproto_livekit/_pump.py",),
    ),
]
SHARED: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (
        "shared: the sans-IO session (errors, policy; after, ClientSession too)",
        ("smproto/session.py",),
        ("smproto/session.py", "smproto/_session.py"),
    ),
    (
        "shared: the drivers' IO helpers",
        (
            "drivers/smproto_asyncio/_http.py",
            "drivers/smproto_asyncio/_logging.py",
            "drivers/smproto_asyncio/_messages.py",
        ),
        (
            "drivers/smproto_io/__init__.py",
            "drivers/smproto_io/http.py",
            "drivers/smproto_io/keys.py",
            "drivers/smproto_io/log.py",
            "drivers/smproto_io/ws.py",
        ),
    ),
]


def code_lines(source: str) -> int:
    """Lines with a token that is not a comment, docstrings and blank lines left out."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                end = body[0].end_lineno or body[0].lineno
                docstrings.update(range(body[0].lineno, end + 1))
    skip = {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENCODING,
        tokenize.ENDMARKER,
    }
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


def read(rev: str | None, path: str) -> str | None:
    """``path`` at ``rev`` (``None``: the checkout); ``None`` when it does not exist."""
    if rev is None:
        file = ROOT / path
        return file.read_text(encoding="utf-8") if file.is_file() else None
    done = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def count(rev: str | None, paths: Sequence[str]) -> tuple[int, int]:
    """(``wc -l``, code lines) over ``paths`` at ``rev``."""
    total = code = 0
    for path in paths:
        source = read(rev, path)
        if source is None:
            raise SystemExit(f"{path} is not in {rev or 'the checkout'}")
        total += source.count("\n")
        code += code_lines(source)
    return total, code


def table(before: str, after: str | None) -> str:
    shown = after or "the checkout"
    lines = [
        f"| file(s) | `wc -l` at {before} | at {shown} | change | code lines at {before} "
        f"| at {shown} | change |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, old, new in [*ROWS, *SHARED]:
        (wc_old, code_old), (wc_new, code_new) = count(before, old), count(after, new)
        lines.append(
            f"| {name} | {wc_old} | {wc_new} | {wc_new - wc_old:+d} | {code_old} | {code_new} "
            f"| {code_new - code_old:+d} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", default="a10e839", help="the commit before (a10e839)")
    parser.add_argument("--after", default="HEAD", help="the commit after (HEAD)")
    parser.add_argument(
        "--worktree", action="store_true", help="the files of the checkout as 'after'"
    )
    args = parser.parse_args()
    print(table(args.before, None if args.worktree else args.after))
    print()
    for name, old, new in [*ROWS, *SHARED]:
        print(f"- {name}: {', '.join(old)} → {', '.join(new)}")


if __name__ == "__main__":
    main()
