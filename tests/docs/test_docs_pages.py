"""Checks of the documentation's sources that need no build: the generated diagrams and
tables are included, not copied; every snippet exists; every Python block compiles and
imports only names that exist."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from tests.support import REPO

DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# pymdownx.snippets, one line (`--8<-- "file"`) or a block (`--8<--` / file / `--8<--`: in
# Python fences, as ruff formats Python in Markdown and leaves a block alone).
SNIPPET = re.compile(r'^\s*--8<-- "([^"]+)"\s*$', re.M)
SNIPPET_BLOCK = re.compile(r"^--8<--\n(.*?)\n--8<--$", re.M | re.S)
PYTHON_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.M | re.S)
GENERATED = ["client-states.mmd", "server-states.mmd", "client-rules.md", "server-rules.md"]


def _page_id(path: Path) -> str:
    return str(path.relative_to(DOCS))


def test_protocol_includes_the_generated_files_by_snippet() -> None:
    """protocol.md includes the generated diagrams (inside mermaid fences) and rules tables;
    no page holds a copy of them, so `python docs/gen_diagrams.py` is all it takes to
    update the site."""
    protocol = (DOCS / "protocol.md").read_text(encoding="utf-8")
    for role in ("client", "server"):
        assert f'```mermaid\n--8<-- "{role}-states.mmd"\n```' in protocol
        assert f'\n--8<-- "{role}-rules.md"\n' in protocol
    for page in PAGES:
        if page.name in GENERATED:
            continue
        text = page.read_text(encoding="utf-8")
        assert "stateDiagram-v2" not in text, f"{_page_id(page)} copies a state diagram"
        assert "| `connection_opened` |" not in text, f"{_page_id(page)} copies a rules table"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_snippet_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    targets = SNIPPET.findall(text)
    for block in SNIPPET_BLOCK.findall(text):
        targets += [line.strip() for line in block.splitlines() if line.strip()]
    for target in targets:
        assert (DOCS / target).is_file(), f"{_page_id(page)} includes a missing {target}"


def _imported_names(tree: ast.AST) -> list[tuple[str, str | None]]:
    names: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [(alias.name, None) for alias in node.names]
    return names


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_python_blocks_compile_and_import_real_names(page: Path) -> None:
    """Inline Python in the pages (the runnable examples are files of their own, run by
    test_examples.py): it must parse (top-level ``await`` allowed, as in a notebook or
    the asyncio REPL), and every name it imports must exist."""
    for indent, code in PYTHON_BLOCK.findall(page.read_text(encoding="utf-8")):
        code = "\n".join(line[len(indent) :] for line in code.splitlines())
        if "--8<--" in code:
            continue  # an included file: checked (and run) by test_examples.py
        compile(code, _page_id(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        for module_name, name in _imported_names(ast.parse(code)):
            if module_name.split(".")[0] in ("livekit", "smproto_livekit"):
                # The livekit extra (and the plugin it replaces) may not be installed.
                pytest.importorskip("livekit.agents")
                module = pytest.importorskip(module_name)
            else:
                module = importlib.import_module(module_name)
            if name is not None and not hasattr(module, name):
                importlib.import_module(f"{module_name}.{name}")  # a submodule, or fail
