"""lightly-mm-factorcl keeps every promise of the host's conformance kit."""

from lightly_mm_plugins.testing import assert_plugin_conforms


def test_factorcl_plugin_conforms():
    results = assert_plugin_conforms("lightly-mm-factorcl")
    names = {r.name for r in results if r.kind == "objectives"}
    assert names == {"factorcl", "factorcl-sup"}
