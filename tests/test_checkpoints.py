"""Checkpoints are never half-written, load with ``weights_only=True``, and bad ones
give errors that name the file and the fix."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lightly_mm_plugins.errors import CheckpointError, LightlyMMError
from lightly_mm_plugins.training import TrainConfig, checkpointing, train
from lightly_mm_plugins.training.checkpointing import (
    atomic_torch_save,
    load_checkpoint_file,
    load_exported,
    remove_stale_tmp_files,
)

# One intra-op thread per test module (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def config(out: Path, **overrides) -> TrainConfig:
    values = dict(
        method="clip",
        data="synthetic",
        limit_train_samples=32,
        batch_size=8,
        epochs=2,
        checkpoint_every_n_steps=2,
        eval_init=False,
        eval_final=False,
        quiet=True,
        out=str(out),
    )
    values.update(overrides)
    return TrainConfig(**values)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run: ``last.ckpt`` and ``encoders.pt`` (read-only for the tests)."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(config(out))
    return out


@pytest.fixture
def stopped_run(tmp_path):
    """A run stopped after epoch 0 (its ``last.ckpt`` is the epoch-end one)."""
    out = tmp_path / "run"
    train(config(out, stop_after_epochs=1))
    return out


# ------------------------------------------------------------------ atomic writes
def test_atomic_write_fsyncs_the_file_before_the_rename_then_the_folder(tmp_path, monkeypatch):
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (calls.append(f"replace {Path(b).name}"), real_replace(a, b))[1]
    )
    atomic_torch_save({"w": torch.ones(3)}, tmp_path / "x.pt")
    assert calls == ["fsync", "replace x.pt", "fsync"]
    assert load_checkpoint_file(tmp_path / "x.pt")["w"].tolist() == [1.0, 1.0, 1.0]
    assert os.listdir(tmp_path) == ["x.pt"]


def test_atomic_write_keeps_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_torch_save({"w": torch.ones(1)}, tmp_path / "x.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "x.pt").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"w": torch.zeros(1000)}, path)
    before = digest(path)

    def half_then_disk_full(obj, f):
        buf = io.BytesIO()
        torch.serialization.save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_torch_save({"w": torch.ones(1000)}, path)
    assert digest(path) == before
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_a_process_killed_while_writing_leaves_the_old_file(tmp_path):
    """``os._exit`` in the middle of the write (no cleanup runs, like ``kill -9``)."""
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"w": torch.zeros(1000)}, path)
    before = digest(path)
    script = textwrap.dedent(
        """
        import io, os, sys, torch
        from lightly_mm_plugins.training.checkpointing import atomic_torch_save
        def dies_midway(obj, f):
            buf = io.BytesIO()
            torch.serialization.save(obj, buf)
            f.write(buf.getvalue()[:100])
            f.flush()
            os._exit(9)
        torch.save = dies_midway
        atomic_torch_save({"w": torch.ones(1000)}, sys.argv[1])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], timeout=120)
    assert proc.returncode == 9
    assert digest(path) == before
    assert load_checkpoint_file(path)["w"].sum() == 0
    leftovers = [p for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".last.ckpt.")
    assert remove_stale_tmp_files(tmp_path) == leftovers
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_crash_while_training_writes_a_checkpoint_keeps_the_previous_one(stopped_run, monkeypatch):
    """Resume, and the first (step) checkpoint write dies half-way: the epoch-end
    ``last.ckpt`` from before is intact and resumable; no partial file anywhere."""
    last = stopped_run / "checkpoints" / "last.ckpt"
    before = digest(last)
    real_save = torch.save

    def half_then_crash(obj, f):
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(CheckpointError, match=r"Input/output error.*previous one there is intact"):
        train(config(stopped_run, resume=True))
    assert digest(last) == before
    assert os.listdir(last.parent) == ["last.ckpt"]
    assert load_checkpoint_file(last)["lightly_mm"]["epochs_done"] == 1

    monkeypatch.setattr(torch, "save", real_save)
    (last.parent / ".last.ckpt.123-abcd.tmp").write_bytes(b"left by a killed writer")
    results = train(config(stopped_run, resume=True))
    assert results["module"].epochs_done == 2 and (stopped_run / "encoders.pt").is_file()
    assert os.listdir(last.parent) == ["last.ckpt"]


def test_lightning_writes_through_the_atomic_checkpoint_io(monkeypatch, tmp_path):
    written: list[str] = []
    real = checkpointing.atomic_torch_save

    def spy(obj, path):
        written.append(Path(path).name)
        real(obj, path)

    monkeypatch.setattr("lightly_mm_plugins.training.callbacks.atomic_torch_save", spy)
    train(config(tmp_path / "run", epochs=1))
    # 4 batches: step checkpoints after batches 2 (not 4: the epoch's last), epoch end.
    assert written == ["last.ckpt", "last.ckpt"]


# --------------------------------------------------------------------- safe loads
def _plain(value, where="checkpoint") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, (str, int)), f"{where}: key {k!r}"
            _plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _plain(v, f"{where}[{i}]")
    else:
        assert value is None or isinstance(value, (torch.Tensor, bool, int, float, str)), (
            f"{where} is a {type(value).__name__}"
        )


def test_checkpoint_and_encoders_hold_only_tensors_and_plain_data(finished_run):
    ckpt = torch.load(finished_run / "checkpoints" / "last.ckpt", weights_only=True)
    _plain(ckpt)
    # save_hyperparameters: the run's plain settings only, never the encoders or objective
    assert set(ckpt["hyper_parameters"]) == {
        "kinds",
        "lr",
        "weight_decay",
        "warmup_epochs",
        "seed",
        "diagnostics_every_n_steps",
    }
    exported = torch.load(finished_run / "encoders.pt", weights_only=True)
    _plain(exported)
    assert load_exported(finished_run / "encoders.pt")["method"] == "clip"


def test_multi_stage_mid_epoch_checkpoint_is_plain_data(tmp_path):
    out = tmp_path / "mcl"
    args = dict(method="mcl", epochs=1, scheduler_args={"num_stages": 2, "num_clusters": 2})
    train(config(out, stop_after_steps=6, **args))  # checkpoint after batch 6: stage 1
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    _plain(ckpt)
    assert ckpt["lightly_mm"]["current_stage"] == 1
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches_done"] == 2


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: stands for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_resume_refuses_a_checkpoint_with_a_pickled_object(stopped_run, tmp_path):
    last = stopped_run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    marker = tmp_path / "code-ran"
    ckpt["hyper_parameters"] = {"anything": _Payload(marker)}
    torch.save(ckpt, last)
    with pytest.raises(CheckpointError, match="weights_only=True") as err:
        train(config(stopped_run, resume=True))
    assert str(last) in str(err.value) and "needs the Python object" in str(err.value)
    assert not marker.exists()
    # The payload is real: an unsafe load would have run it.
    torch.load(last, weights_only=False)
    assert marker.exists()


def test_load_exported_refuses_a_pickled_object(finished_run, tmp_path):
    state = torch.load(finished_run / "encoders.pt", weights_only=True)
    marker = tmp_path / "code-ran"
    state["extra"] = _Payload(marker)
    path = tmp_path / "encoders.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_exported(path)
    assert not marker.exists()


# ------------------------------------------------------------------ clear errors
@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_truncated_checkpoint_names_the_file_and_the_fix(stopped_run, keep):
    last = stopped_run / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        train(config(stopped_run, resume=True))
    message = str(err.value)
    assert str(last) in message and "Delete it" in message
    assert last.stat().st_size == int(len(data) * keep)  # left as it was


def test_truncated_encoders_file_names_the_file(finished_run, tmp_path):
    data = (finished_run / "encoders.pt").read_bytes()
    path = tmp_path / "encoders.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        load_exported(path)
    assert str(path) in str(err.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_exported(tmp_path / "missing.pt")


def test_checkpoint_path_that_is_a_folder_is_reported(tmp_path):
    (tmp_path / "run" / "checkpoints" / "last.ckpt").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="is not a file"):
        train(config(tmp_path / "run", resume=True))


def test_mid_epoch_resume_with_another_batch_size_is_refused(tmp_path):
    out = tmp_path / "run"
    train(config(out, stop_after_steps=3))  # checkpoint after batch 2 of epoch 0
    with pytest.raises(CheckpointError, match="--batch-size"):
        train(config(out, resume=True, batch_size=4))


def test_output_dir_below_a_file_is_reported(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(LightlyMMError, match=r"cannot write to output directory .*file/sub"):
        train(config(tmp_path / "file" / "sub"))
