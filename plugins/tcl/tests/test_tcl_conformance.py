"""The TCL plugin keeps every promise of the host's conformance kit."""

from lightly_mm_plugins.testing import assert_plugin_conforms


def test_tcl_plugin_conforms():
    results = assert_plugin_conforms("lightly-mm-tcl")
    assert any(r.kind == "objectives" and r.name == "tcl" for r in results)
    assert any(r.kind == "views" and r.name == "tcl" for r in results)
