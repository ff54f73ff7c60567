"""Code in the docs runs: the minimal plugin of docs/writing-a-plugin.md conforms."""

from __future__ import annotations

import re
import types
from pathlib import Path

from lightly_mm_plugins import PluginHost
from lightly_mm_plugins.hookspecs import HOOKSPEC_VERSION
from lightly_mm_plugins.testing import assert_plugin_conforms

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_minimal_plugin_from_the_docs_conforms():
    block = next(b for b in _python_blocks(DOCS / "writing-a-plugin.md") if "hookimpl" in b)
    assert len(block.strip().splitlines()) < 40
    module = types.ModuleType("lightly_mm_hello")
    exec(compile(block, "writing-a-plugin.md", "exec"), module.__dict__)
    host = PluginHost(autoload=False, strict=True)
    host.register_plugin(module, name="lightly-mm-hello")
    assert "hello" in host.registry("objectives")
    assert_plugin_conforms("lightly-mm-hello", host)


def test_every_hook_is_documented():
    text = (DOCS / "writing-a-plugin.md").read_text()
    for hook in (
        "register_objectives",
        "register_views",
        "register_heads",
        "register_stage_schedulers",
    ):
        assert f"`{hook}(register)`" in text
    assert HOOKSPEC_VERSION.split(".")[0] in text


def test_requirements_table_in_the_docs_is_the_generated_one(capsys):
    """docs/using-in-lightly.md holds exactly what `lightly-mm plugins --requirements` prints."""
    from lightly_mm_plugins.cli import main

    assert main(["plugins", "--requirements"]) == 0
    generated = capsys.readouterr().out.strip()
    text = (DOCS / "using-in-lightly.md").read_text()
    found = re.search(
        r"<!-- requirements-table:start -->\n(.*?)\n<!-- requirements-table:end -->", text, re.S
    )
    assert found, "the requirements table markers are missing from docs/using-in-lightly.md"
    assert found.group(1).strip() == generated, (
        "docs/using-in-lightly.md is out of date: paste `lightly-mm plugins --requirements`"
    )
    assert "| `tcl` | lightly-mm-tcl | image 2, text 1 | yes" in generated
    assert "| `mcl` | lightly-mm-mcl |" in generated and "needed" in generated
