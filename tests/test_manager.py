"""Discovery, selection, failure isolation and conflicts of the plugin host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
from fakes import FAKE_DISTS, FAKE_PLUGINS, fake_entry_points

from lightly_mm_plugins import PluginHost, hookimpl
from lightly_mm_plugins.errors import PluginConflictError, PluginError, UnknownComponentError


def host_with(*modules: str, **kwargs) -> PluginHost:
    kwargs.setdefault("strict", False)
    return PluginHost(entry_points=fake_entry_points(*modules), **kwargs)


def test_discovers_and_lists_names(fake_plugin_path):
    host = host_with("lmm_ok")
    assert host.registry("objectives").names() == ["dup", "fake-objective"]
    assert host.registry("views").names() == ["fake-view", "paired"]
    assert "fake-head" in host.registry("heads")
    assert "fake-scheduler" in host.registry("stage_schedulers")
    entry = host.registry("objectives").get("fake-objective")
    assert entry.plugin == "lightly-mm-ok"
    assert entry.description == "a fake objective"


def test_create_with_string_factory_imports_lazily(fake_plugin_path):
    host = host_with("lmm_ok")
    assert host.create("views", "fake-view", a=1) == ("objective", {"a": 1})


def test_loading_is_lazy(fake_plugin_path):
    host = host_with("lmm_ok")
    assert "lmm_ok" not in sys.modules
    host.registry("objectives")
    assert "lmm_ok" in sys.modules


def test_broken_plugin_is_isolated_and_reported(fake_plugin_path):
    with pytest.warns(UserWarning, match="failed at import"):
        host = host_with("lmm_ok", "lmm_broken")
        names = host.registry("objectives").names()
    assert "fake-objective" in names
    failures = host.failures()
    assert [(f.plugin, f.stage) for f in failures] == [("lightly-mm-broken", "import")]
    assert "package_that_does_not_exist" in failures[0].error
    status = {p.name: p.status for p in host.plugins()}
    assert status["lightly-mm-broken"] == "failed"
    assert status["lightly-mm-ok"] == "active"
    with pytest.raises(UnknownComponentError, match="lightly-mm-broken"):
        host.registry("objectives").get("whatever")


def test_strict_mode_reraises(fake_plugin_path):
    with pytest.raises(PluginError, match="lightly-mm-broken"):
        host_with("lmm_broken", strict=True).registry("objectives")


def test_strict_mode_from_environment(fake_plugin_path, monkeypatch):
    monkeypatch.setenv("LIGHTLY_MM_STRICT_PLUGINS", "1")
    host = PluginHost(entry_points=fake_entry_points("lmm_broken"))
    with pytest.raises(PluginError):
        host.registry("objectives")


def test_hook_that_raises_is_rolled_back(fake_plugin_path):
    with pytest.warns(UserWarning, match="boom"):
        host = host_with("lmm_ok", "lmm_raises")
        objectives = host.registry("objectives").names()
    assert "half-registered" not in objectives
    assert "fake-objective" in objectives
    # A plugin failing in one hook loses every registration, whatever was asked first.
    assert "raises-view" not in host.registry("views")
    assert [f.stage for f in host.failures()] == ["register_objectives"]


def test_typo_hook_fails_validation(fake_plugin_path):
    with pytest.warns(UserWarning, match="validate"):
        host = host_with("lmm_typo", "lmm_ok")
        assert "fake-objective" in host.registry("objectives")
    assert host.failures()[0].stage == "validate"


def test_future_hookspec_version_is_rejected_clearly(fake_plugin_path):
    with pytest.warns(UserWarning, match="hook spec 2.0"):
        host = host_with("lmm_future")
        assert "from-the-future" not in host.registry("objectives")


def test_duplicate_names_conflict_and_name_both(fake_plugin_path):
    host = host_with("lmm_ok", "lmm_clash")
    reg = host.registry("objectives")
    assert "dup" not in reg.names()
    with pytest.raises(PluginConflictError) as err:
        reg.get("dup")
    msg = str(err.value)
    assert "lightly-mm-ok" in msg and "lightly-mm-clash" in msg
    assert "LIGHTLY_MM_DISABLE_PLUGINS" in msg
    # everything else keeps working
    assert reg.create("clash-only") == "clash-only"
    assert set(host.conflicts()["objectives"]) == {"dup"}


def test_disable_resolves_conflict(fake_plugin_path):
    host = host_with("lmm_ok", "lmm_clash", disable=["lightly-mm-clash"])
    assert host.registry("objectives").create("dup") == ("objective", {})
    assert "lmm_clash" not in sys.modules


def test_allow_list_argument_and_env(fake_plugin_path, monkeypatch):
    host = host_with("lmm_ok", "lmm_clash", load=["lightly-mm-ok"])
    assert "clash-only" not in host.registry("objectives")
    assert "lmm_clash" not in sys.modules
    monkeypatch.setenv("LIGHTLY_MM_LOAD_PLUGINS", "")
    host = PluginHost(entry_points=fake_entry_points("lmm_ok"))
    assert host.registry("objectives").names() == []
    monkeypatch.setenv("LIGHTLY_MM_LOAD_PLUGINS", "lightly_mm_ok")  # normalised
    host = PluginHost(entry_points=fake_entry_points("lmm_ok", "lmm_clash"))
    assert "fake-objective" in host.registry("objectives")
    assert "clash-only" not in host.registry("objectives")


def test_deny_list_env(fake_plugin_path, monkeypatch):
    monkeypatch.setenv("LIGHTLY_MM_DISABLE_PLUGINS", "lightly-mm-broken, lightly-mm-clash")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        host = PluginHost(entry_points=fake_entry_points("lmm_ok", "lmm_broken", "lmm_clash"))
        assert host.registry("objectives").create("dup") == ("objective", {})
    status = {p.name: p.status for p in host.plugins()}
    assert status["lightly-mm-broken"] == "disabled"
    assert "lmm_broken" not in sys.modules


def test_unknown_name_lists_alternatives_and_close_matches(fake_plugin_path):
    host = host_with("lmm_ok")
    with pytest.raises(UnknownComponentError) as err:
        host.registry("objectives").get("fake-objectiv")
    msg = str(err.value)
    assert "available: dup, fake-objective" in msg
    assert "did you mean 'fake-objective'" in msg


def test_in_process_registration():
    class Plugin:
        @hookimpl
        def register_objectives(self, register):
            register("inline", lambda **kw: kw)

    host = PluginHost(autoload=False, strict=True)
    name = host.register_plugin(Plugin(), name="inline-plugin")
    assert host.create("objectives", "inline", x=2) == {"x": 2}
    host.unregister_plugin(name)
    assert "inline" not in host.registry("objectives")


def test_invalid_component_name_is_a_plugin_failure():
    class Plugin:
        @hookimpl
        def register_objectives(self, register):
            register("Bad Name!", lambda **kw: kw)

    host = PluginHost(autoload=False, strict=False)
    with pytest.warns(UserWarning, match="invalid component name"):
        host.register_plugin(Plugin(), name="bad")
        host.registry("objectives")


def test_registering_same_name_twice_is_the_plugins_bug():
    class Plugin:
        @hookimpl
        def register_heads(self, register):
            register("twice", lambda **kw: kw)
            register("twice", lambda **kw: kw)

    host = PluginHost(autoload=False, strict=True)
    host.register_plugin(Plugin(), name="twice-plugin")
    with pytest.raises(PluginError, match="twice"):
        host.registry("heads")


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120
    )


def test_real_entry_point_discovery_from_installed_metadata():
    path = os.pathsep.join([str(FAKE_DISTS), str(FAKE_PLUGINS)])
    code = (
        "import json, lightly_mm_plugins as l\n"
        "h = l.get_host()\n"
        "info = {p.name: [p.distribution, p.version, p.status] for p in h.plugins()}\n"
        "print(json.dumps([info['lightly-mm-fake'], l.list_names('objectives')]))\n"
    )
    proc = _run(code, PYTHONPATH=path, LIGHTLY_MM_LOAD_PLUGINS="lightly-mm-fake")
    assert proc.returncode == 0, proc.stderr
    info, names = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info == ["lightly-mm-fake", "0.3.0", "active"]
    assert "fake-objective" in names


def test_import_is_cheap_and_imports_no_plugin_or_torch():
    code = (
        "import sys, lightly_mm_plugins\n"
        "bad = [m for m in sys.modules if m in ('torch', 'pluggy', 'importlib.metadata') "
        "or m.startswith('lightly_mm_') and not m.startswith('lightly_mm_plugins')]\n"
        "print(bad)\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_plugin_modules_import_without_torch():
    """Every shipped plugin's hook module registers without importing torch (or logging)."""
    code = (
        "import sys, lightly_mm_plugins as l\n"
        "l.get_host().plugins()\n"
        "print(sorted(m for m in ('torch', 'logging') if m in sys.modules))\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
