"""The plugin template installs, is discovered, and passes the conformance kit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "plugin-template"


@pytest.fixture(scope="module")
def installed_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(TEMPLATE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=build,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def _run(code: str, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "LIGHTLY_MM_STRICT_PLUGINS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


def test_template_is_discovered(installed_template):
    code = (
        "import json, lightly_mm_plugins as l\n"
        "p = {i.distribution: [i.status, i.provides] for i in l.get_host().plugins()}\n"
        "print(json.dumps(p['lightly-mm-dcl']))\n"
    )
    proc = _run(code, installed_template)
    assert proc.returncode == 0, proc.stderr
    status, provides = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status == "active"
    assert provides == {"objectives": ["dcl"], "views": ["dcl"]}


def test_template_passes_the_conformance_kit(installed_template):
    code = (
        "from lightly_mm_plugins.testing import assert_plugin_conforms\n"
        "r = assert_plugin_conforms('lightly-mm-dcl')\n"
        "print(len(r))\n"
    )
    proc = _run(code, installed_template)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip().splitlines()[-1]) >= 9
