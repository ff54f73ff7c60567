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
