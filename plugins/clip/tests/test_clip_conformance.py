"""The baseline plugin keeps every promise of the conformance kit."""

from lightly_mm_plugins.testing import assert_plugin_conforms


def test_clip_plugin_conforms():
    results = assert_plugin_conforms("lightly-mm-clip")
    assert any(r.kind == "objectives" and r.name == "clip" for r in results)
    assert any(r.kind == "views" and r.name == "clip" for r in results)
