"""smproto/ is the sans-IO core: it imports no IO library, no clock, no event loop."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import smproto

FORBIDDEN = {
    "asyncio",
    "trio",
    "anyio",
    "socket",
    "ssl",
    "selectors",
    "select",
    "websockets",
    "wsproto",
    "aiohttp",
    "httpx",
    "requests",
    "urllib",
    "http",
    "threading",
    "multiprocessing",
    "subprocess",
    "time",
    "datetime",
    "logging",
    "os",
    "io",
    "livekit",
}
# smproto.testing is the one module allowed to import hypothesis (an optional extra).
OPTIONAL = {"testing.py": {"hypothesis"}}

CORE = Path(smproto.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_modules_import_no_io_library() -> None:
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        bad = _imports(path) & FORBIDDEN
        assert not bad, f"{path.relative_to(CORE.parent)} imports {sorted(bad)}"


def test_third_party_imports_are_only_transitions() -> None:
    stdlib = set(sys.stdlib_module_names)
    for path in CORE.rglob("*.py"):
        third_party = {m for m in _imports(path) if m not in stdlib and m != "smproto"}
        assert third_party <= {"transitions"} | OPTIONAL.get(path.name, set()), (
            f"{path.name} imports {sorted(third_party)}"
        )


def test_importing_smproto_loads_no_event_loop_or_socket() -> None:
    """In a fresh interpreter, importing smproto pulls in no IO library (transitions itself
    may import logging, which is not ours to police)."""
    code = (
        "import sys, smproto, smproto.events, smproto.auth, smproto.config;"
        "print(' '.join(m for m in ('asyncio', 'trio', 'socket', 'ssl', 'websockets',"
        " 'aiohttp', 'hypothesis', 'selectors', 'urllib.request', 'http.client')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_whole_run_log_scanner_is_listening(log_scanner: object) -> None:
    """A key logged by our code would be caught (tests/conftest.py fails the run)."""
    import logging

    from tests.support import SECRETS, secret

    key = secret("canary")
    scanner = log_scanner
    before = len(scanner.leaks)  # type: ignore[attr-defined]
    logging.getLogger("smproto.canary").debug("Authorization: Bearer %s", key)
    assert len(scanner.leaks) == before + 1  # type: ignore[attr-defined]
    scanner.leaks.pop()  # type: ignore[attr-defined]
    SECRETS.discard(key)
