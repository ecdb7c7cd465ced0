"""The documentation site builds with ``mkdocs build --strict`` (warnings are errors:
broken links and anchors, missing snippets, docstrings mkdocstrings cannot render), and
the state diagrams in the built site are the ones generated from the state machines."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from smproto._state import mermaid_diagram
from tests.support import REPO

pytest.importorskip(
    "mkdocs", reason="the documentation tools are not installed: pip install -e '.[docs]'"
)
pytest.importorskip("mkdocstrings", reason="pip install -e '.[docs]'")
pytest.importorskip("material", reason="pip install -e '.[docs]'")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module (into a temporary folder)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-6000:]}"
    return out


def test_the_site_builds_strictly(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in ["quickstart", "sans-io", "asyncio", "trio", "livekit", "server", "protocol"]:
        assert (site / page / "index.html").is_file(), page
    api = (site / "api" / "smproto" / "index.html").read_text(encoding="utf-8")
    # The API reference is rendered from the docstrings, reST roles turned into links.
    assert 'id="smproto.ClientConnection"' in api
    assert ":class:" not in api and ":meth:" not in api
    for html_page in site.rglob("*.html"):
        assert "--8&lt;--" not in html_page.read_text(encoding="utf-8"), html_page


def test_the_diagrams_in_the_site_are_the_generated_ones(site: Path) -> None:
    page = (site / "protocol" / "index.html").read_text(encoding="utf-8")
    blocks = re.findall(r'<pre class="mermaid"><code>(.*?)</code></pre>', page, re.S)
    expected = [mermaid_diagram("client"), mermaid_diagram("server")]
    assert [html.unescape(block) for block in blocks] == expected
