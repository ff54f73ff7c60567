"""`lightly-mm plugins` table, JSON and check, in a fresh process each."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fakes import FIXTURES

FAKE_PATH = os.pathsep.join([str(FIXTURES / "dists"), str(FIXTURES / "fake_plugins")])


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    full_env.pop("LIGHTLY_MM_STRICT_PLUGINS", None)
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "lightly_mm_plugins.cli", "plugins", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def test_table_lists_baseline_plugin():
    proc = run_cli()
    assert proc.returncode == 0, proc.stderr
    assert "lightly-mm-clip" in proc.stdout
    assert "objectives: clip" in proc.stdout
    assert "Conflicts: none" in proc.stdout


def test_json_is_an_object_with_plugins_and_components():
    proc = run_cli("--json", "--all")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) >= {"plugins", "conflicts", "failures", "components"}
    by_dist = {p["distribution"]: p for p in report["plugins"]}
    assert by_dist["lightly-mm-clip"]["status"] == "active"
    assert "clip" in by_dist["lightly-mm-clip"]["provides"]["objectives"]
    assert by_dist["lightly-mm-plugins"]["status"] == "builtin"
    assert "single" in [c["name"] for c in report["components"]["stage_schedulers"]]


def test_empty_allow_list_loads_nothing_and_still_works():
    proc = run_cli("--json", LIGHTLY_MM_LOAD_PLUGINS="")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert all(p["status"] == "disabled" for p in report["plugins"])


def test_broken_plugin_is_shown_and_check_fails(tmp_path):
    dist = tmp_path / "lightly_mm_broken-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lightly-mm-broken\nVersion: 0.0.1\n"
    )
    (dist / "entry_points.txt").write_text("[lightly_mm_plugins]\nlightly-mm-broken = lmm_broken\n")
    path = os.pathsep.join([str(tmp_path), FAKE_PATH])
    proc = run_cli(PYTHONPATH=path, LIGHTLY_MM_LOAD_PLUGINS="lightly-mm-broken,lightly-mm-fake")
    assert proc.returncode == 0, proc.stderr
    assert "failed" in proc.stdout and "package_that_does_not_exist" in proc.stdout
    assert "lightly-mm-fake" in proc.stdout
    check = run_cli("check", PYTHONPATH=path, LIGHTLY_MM_LOAD_PLUGINS="lightly-mm-broken")
    assert check.returncode == 1
    assert "1 failure(s)" in check.stderr
    strict = run_cli(
        "check",
        PYTHONPATH=path,
        LIGHTLY_MM_LOAD_PLUGINS="lightly-mm-broken",
        LIGHTLY_MM_STRICT_PLUGINS="1",
    )
    assert strict.returncode == 1
    assert "lightly-mm-broken" in strict.stderr


def test_check_passes_for_installed_plugins():
    proc = run_cli("check", LIGHTLY_MM_LOAD_PLUGINS="lightly-mm-clip")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check: OK" in proc.stdout


def test_parser_and_plugins_command_import_no_torch():
    """Building the whole ``lightly-mm`` parser (train, compare, data to-shards) and running
    ``lightly-mm plugins`` stay torch-free: torch is imported only when a command needs it."""
    code = (
        "import sys\n"
        "from lightly_mm_plugins import cli\n"
        "cli.build_parser()\n"
        "print('torch' in sys.modules)\n"
        "rc = cli.main(['plugins'])\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    env = {**os.environ}
    env.pop("LIGHTLY_MM_STRICT_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "False", "building the parser imported torch"
    assert lines[-1] == "0 False", "lightly-mm plugins imported torch"
