"""Issue #18 item 4: ``--config run.yaml`` / ``--print-config``; a run folder's
``config.yaml`` loads back and repeats the run; the settings reach the loggers."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from lightly_mm_plugins.cli import main as cli_main

TINY = [
    *("--method", "clip", "--data", "synthetic", "--limit-train-samples", "16"),
    *("--batch-size", "8", "--epochs", "1", "--no-eval", "--quiet"),
]


# One intra-op thread per test module (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli_main(list(argv))
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cfg") / "first"
    status, _, stderr = run_cli(
        "train", *TINY, "--method-args", "projection_dim=16", "--out", str(out)
    )
    assert status == 0, stderr
    return out


def test_the_run_folder_holds_its_config_with_defaults_filled_in(first_run: Path) -> None:
    saved = yaml.safe_load((first_run / "config.yaml").read_text())
    assert saved["method"] == "clip" and saved["method_args"] == {"projection_dim": 16}
    assert saved["epochs"] == 1 and saved["batch_size"] == 8 and saved["no_eval"] is True
    assert saved["view"] == "clip" and saved["scheduler"] == "single"  # resolved defaults
    assert saved["resume"] is False and saved["overwrite"] is False


def test_the_saved_config_loads_back_and_repeats_the_run(first_run: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    status, _, stderr = run_cli(
        "train", "--config", str(first_run / "config.yaml"), "--out", str(again)
    )
    assert status == 0, stderr
    a = json.loads((first_run / "metrics.json").read_text())["resolved"]
    b = json.loads((again / "metrics.json").read_text())["resolved"]
    assert {k: v for k, v in a.items() if k != "out"} == {k: v for k, v in b.items() if k != "out"}
    assert (again / "config.yaml").read_text() == (first_run / "config.yaml").read_text().replace(
        str(first_run), str(again)
    )
    # ... and resumes with it (same settings: accepted)
    status, _, stderr = run_cli("train", "--config", str(again / "config.yaml"), "--resume")
    assert status == 0, stderr


def test_print_config_merges_file_and_flags_and_runs_nothing(
    first_run: Path, tmp_path: Path
) -> None:
    status, stdout, _ = run_cli(
        "train", "--config", str(first_run / "config.yaml"), "--seed", "7", "--print-config"
    )
    assert status == 0
    printed = yaml.safe_load(stdout)
    assert printed["seed"] == 7 and printed["method_args"] == {"projection_dim": 16}


def test_bad_values_in_a_config_file_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: clip\nepochs: 0\n")
    status, _, stderr = run_cli("train", "--config", str(bad), "--out", str(tmp_path / "r"))
    assert status == 2 and stderr.splitlines() == [
        "lightly-mm train: error: --epochs 0: must be a positive integer"
    ]
    bad.write_text("method: clip\nbatch_sise: 8\n")
    status, _, stderr = run_cli("train", "--config", str(bad))
    assert status == 2 and len(stderr.splitlines()) == 1 and "batch_sise" in stderr


def test_the_settings_reach_the_loggers(first_run: Path) -> None:
    hparams = yaml.safe_load((first_run / "logs" / "version_0" / "hparams.yaml").read_text())
    assert hparams["batch_size"] == 8 and hparams["method"] == "clip"
    assert hparams["epochs"] == 1 and hparams["precision"] == "32-true"
