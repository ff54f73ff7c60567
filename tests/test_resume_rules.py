"""Issue #18 item 3: ``--resume`` refuses a changed run and calls a corrupt checkpoint corrupt.

The checkpoint carries the resolved settings of the run that wrote it; a resume
whose settings differ in anything that changes the result is refused with an
error naming every changed setting. ``--allow-changed`` lets the safe ones
(epochs, hardware) differ. A checkpoint of random bytes or with flipped bytes is
"corrupt" (CRC-32 of the zip members), never "refused".
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import pytest

from lightly_mm_plugins.errors import CheckpointError, ConfigError, ResumeMismatchError
from lightly_mm_plugins.training import TrainConfig, train
from lightly_mm_plugins.training.checkpointing import load_checkpoint_file
from lightly_mm_plugins.training.config import resume_differences
from lightly_mm_plugins.training.validation import validate_values

# One intra-op thread per test module (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(out: Path, **overrides) -> TrainConfig:
    values = dict(
        method="clip",
        data="synthetic",
        limit_train_samples=16,
        batch_size=8,
        epochs=2,
        eval_init=False,
        eval_final=False,
        quiet=True,
        out=str(out),
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def stopped_template(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "run"
    train(tiny(out, stop_after_epochs=1))
    return out


@pytest.fixture
def stopped(stopped_template: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(stopped_template, out)
    return out


def test_the_checkpoint_holds_the_resolved_settings(stopped: Path) -> None:
    saved = load_checkpoint_file(stopped / "checkpoints" / "last.ckpt")["lightly_mm_config"]
    assert saved["batch_size"] == 8 and saved["epochs"] == 2 and saved["seed"] == 0
    assert saved["view"] == "clip" and saved["precision"] == "32-true"
    assert saved["train_samples"] == 16 and saved["accelerator"] == "cpu"


CHANGES = [
    ({"batch_size": 4}, [r"--batch-size 8 -> 4"]),
    ({"seed": 1}, [r"--seed 0 -> 1"]),
    ({"lr": 0.01}, [r"--lr 0\.001 -> 0\.01"]),
    ({"data": "synthetic:all"}, [r"--data 'synthetic' -> 'synthetic:all'"]),
    ({"method_args": {"projection_dim": 16}}, [r"--method-args \{\} -> \{'projection_dim': 16\}"]),
    ({"limit_train_samples": 8}, [r"--limit-train-samples 16 -> 8", r"training instances 16 -> 8"]),
    ({"weight_decay": 0.0, "warmup_epochs": 0.0}, [r"--weight-decay", r"--warmup-epochs"]),
    ({"view_args": {"seed": 3}}, [r"--view-args"]),
]


@pytest.mark.parametrize("change,named", CHANGES, ids=lambda v: str(v))
def test_resume_with_a_changed_setting_is_refused_naming_it(stopped: Path, change, named) -> None:
    with pytest.raises(ResumeMismatchError, match=r"^--resume: this run differs") as err:
        train(tiny(stopped, resume=True, **change))
    for pattern in named:
        assert re.search(pattern, str(err.value)), str(err.value)
    assert "--overwrite or another --out" in str(err.value)
    assert "--allow-changed" not in str(err.value)  # these cannot be allowed


def test_more_epochs_are_refused_unless_allowed(stopped: Path) -> None:
    with pytest.raises(ResumeMismatchError, match=r"--epochs 2 -> 3.*--allow-changed epochs"):
        train(tiny(stopped, resume=True, epochs=3))
    with warnings.catch_warnings():  # the LR schedule is stretched, never run past its end
        warnings.filterwarnings("error", message="Current step number", category=RuntimeWarning)
        results = train(tiny(stopped, resume=True, epochs=3, allow_changed=["epochs"]))
    assert results["module"].epochs_done == 3


def test_an_unchanged_resume_and_omitted_defaults_continue(stopped: Path) -> None:
    # epochs=None resolves to the default (10 on synthetic data): a change, refused
    with pytest.raises(ResumeMismatchError, match=r"--epochs 2 -> 10"):
        train(tiny(stopped, resume=True, epochs=None))
    # settings that do not change the result may differ
    results = train(tiny(stopped, resume=True, num_workers=0, checkpoint_every_n_steps=1))
    assert results["module"].epochs_done == 2


def test_allow_changed_names_only_safe_settings() -> None:
    with pytest.raises(ConfigError, match=r"--allow-changed \['batch_size'\]: may name only"):
        validate_values(TrainConfig(allow_changed=["batch_size"]))
    assert resume_differences({"epochs": 2}, {"epochs": 3}, ["--epochs"]) == []
    assert resume_differences({"devices": 1}, {"devices": "1"}) == []


def test_random_bytes_are_corrupt_not_refused(stopped: Path) -> None:
    last = stopped / "checkpoints" / "last.ckpt"
    last.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="corrupt") as err:
        train(tiny(stopped, resume=True))
    assert "refused" not in str(err.value) and str(last) in str(err.value)


def test_flipped_bytes_are_found_by_the_checksum(stopped: Path) -> None:
    last = stopped / "checkpoints" / "last.ckpt"
    data = bytearray(last.read_bytes())
    for offset in (len(data) // 3, len(data) // 2):  # inside tensor data
        data[offset] ^= 0x40
    last.write_bytes(bytes(data))
    pattern = r"corrupt and cannot be read \(checksum mismatch in '.*'"
    with pytest.raises(CheckpointError, match=pattern) as err:
        load_checkpoint_file(last)
    assert "refused" not in str(err.value)
