"""The plugin registers ``tcl`` (objective and view) without importing torch."""

from __future__ import annotations

import subprocess
import sys

from lightly_mm_tcl.objective import TCLObjective
from lightly_mm_tcl.views import TCLView

import lightly_mm_plugins as lmm


def test_registered_and_buildable_through_the_host() -> None:
    assert "tcl" in lmm.list_names("objectives")
    assert "tcl" in lmm.list_names("views")
    obj = lmm.create_objective(
        "tcl", embedding_dims={"image": 16, "text": 8}, modalities=("image", "text"), embed_dim=4
    )
    assert isinstance(obj, TCLObjective)
    view = lmm.create_view("tcl", modalities={"image": "image", "text": "text"}, image_size=32)
    assert isinstance(view, TCLView)
    entry = lmm.get_host().registry("objectives").get("tcl")
    assert entry.metadata["view"] == "tcl"


def test_plugin_module_imports_no_torch() -> None:
    code = (
        "import sys, lightly_mm_tcl.plugin as p; "
        "assert p.LIGHTLY_MM_HOOKSPEC == '1.0'; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
