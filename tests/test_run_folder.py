"""Issue #18 item 1: a run folder holds one run, written by one process at a time.

A non-empty ``--out`` without ``--resume`` is refused (naming ``--resume`` and
``--overwrite``) and left untouched; ``--overwrite`` deletes only the run's own
outputs; a lock file refuses a concurrent run, and a stale lock of a killed run
is detected and replaced; the loss curve reads only this run's logs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lightly_mm_plugins.cli import main as cli_main
from lightly_mm_plugins.errors import ConfigError
from lightly_mm_plugins.training import TrainConfig, train
from lightly_mm_plugins.training.outdir import (
    LOCK_NAME,
    RunFolderError,
    check_run_folder,
    claim_run_folder,
)

# One intra-op thread per test module (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(out: Path, **overrides) -> TrainConfig:
    values = dict(
        method="clip",
        data="synthetic",
        limit_train_samples=16,
        batch_size=8,
        epochs=1,
        eval_init=False,
        eval_final=False,
        quiet=True,
        out=str(out),
    )
    values.update(overrides)
    return TrainConfig(**values)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = cli_main(list(argv))
    return status, err.getvalue()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("folder") / "run"
    train(tiny(out))
    return out


def test_a_finished_run_leaves_no_lock(finished: Path) -> None:
    assert (finished / "encoders.pt").is_file() and not (finished / LOCK_NAME).exists()


def test_reused_out_is_refused_naming_resume_and_overwrite(finished: Path) -> None:
    before = {p.name: digest(p) for p in finished.iterdir() if p.is_file()}
    with pytest.raises(RunFolderError, match=r"is not empty .*--resume.*--overwrite") as err:
        train(tiny(finished, method="mxm-clr"))
    assert "encoders.pt" in str(err.value) and "metrics.json" in str(err.value)
    assert {p.name: digest(p) for p in finished.iterdir() if p.is_file()} == before
    # the command line refuses it before any work, exit 2, one line
    status, stderr = run_cli("train", "--method", "clip", "--out", str(finished), "--no-eval")
    assert status == 2 and len(stderr.splitlines()) == 1 and "--overwrite" in stderr


def test_overwrite_replaces_only_the_runs_outputs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiny(out))
    (out / "notes.txt").write_text("mine")
    old = json.loads((out / "metrics.json").read_text())
    train(tiny(out, overwrite=True, seed=3))
    assert (out / "notes.txt").read_text() == "mine"  # not ours: left alone
    assert (
        json.loads((out / "metrics.json").read_text())["config"]["seed"]
        == 3
        != old["config"]["seed"]
    )
    # the loss curve reads this run's logs only: one logs/version_*
    assert [p.name for p in (out / "logs").iterdir()] == ["version_0"]


def test_a_folder_with_other_files_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(RunFolderError, match=r"holds files: data\.csv"):
        check_run_folder(tmp_path, resume=False, overwrite=False)
    check_run_folder(tmp_path, resume=False, overwrite=True)


def test_resume_and_overwrite_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--resume and --overwrite contradict"):
        train(tiny(tmp_path / "run", resume=True, overwrite=True))


def _write_lock(folder: Path, **record) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    lock.write_text(json.dumps({"host": socket.gethostname(), "started": "earlier", **record}))
    return lock


def test_a_held_lock_refuses_a_concurrent_run(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = _write_lock(tmp_path / "run", pid=holder.pid)
        with pytest.raises(
            RunFolderError, match=rf"in use by another lightly-mm run \(pid {holder.pid}"
        ):
            train(tiny(tmp_path / "run"))
        status, stderr = run_cli("train", "--method", "clip", "--out", str(tmp_path / "run"))
        assert status == 2 and f"delete {lock}" in stderr
        assert lock.exists()  # still the other run's
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_from_another_host_is_refused(tmp_path: Path) -> None:
    _write_lock(tmp_path / "run", pid=1, host="elsewhere.example")
    with pytest.raises(RunFolderError, match=r"on elsewhere\.example"):
        with claim_run_folder(tmp_path / "run", resume=False, overwrite=False):
            pass


def test_a_stale_lock_of_a_killed_run_is_replaced(tmp_path: Path, capfd) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = _write_lock(tmp_path / "run", pid=dead.pid)
    with claim_run_folder(tmp_path / "run", resume=False, overwrite=False) as folder:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert folder.fresh
    assert not lock.exists()
    assert f"removed the stale lock of a run that ended (pid {dead.pid})" in capfd.readouterr().err


def test_resume_without_a_checkpoint_says_it_starts_fresh(tmp_path: Path, capfd) -> None:
    out = tmp_path / "run"
    (out / "logs" / "version_0").mkdir(parents=True)  # an attempt killed before its checkpoint
    with claim_run_folder(out, resume=True, overwrite=False) as folder:
        assert folder.fresh and not (out / "logs").exists()
    assert "--resume: no checkpoint at" in capfd.readouterr().err
    (out / "metrics.json").write_text("{}")  # a finished run whose checkpoint is gone
    with pytest.raises(RunFolderError, match="--overwrite"):
        check_run_folder(out, resume=True, overwrite=False)


def test_compare_refuses_earlier_runs_unless_overwrite(tmp_path: Path) -> None:
    argv = [
        *("compare", "--methods", "clip", "--seeds", "0", "--data", "synthetic"),
        *("--limit-train-samples", "16", "--batch-size", "8", "--epochs", "1", "--quiet"),
        *("--out", str(tmp_path / "cmp")),
    ]
    status, stderr = run_cli(*argv)
    assert status == 0, stderr
    assert (tmp_path / "cmp" / "compare.json").is_file()
    status, stderr = run_cli(*argv)
    assert status == 2 and "clip-seed0 is not empty" in stderr and "--overwrite" in stderr
    status, stderr = run_cli(*argv, "--overwrite")
    assert status == 0, stderr
