"""Issue #18 item 2: every run setting is checked before any work starts.

A bad value is one line ``lightly-mm train: error: --flag value: ...`` with exit
status 2 and no traceback; nothing is replaced by a default. The CLI rows run
``lightly-mm`` in-process and assert that nothing was written to ``--out``
(no work started).
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Literal

import pytest

from lightly_mm_plugins.cli import main as cli_main
from lightly_mm_plugins.errors import ArgumentError, ConfigError
from lightly_mm_plugins.training.arg_types import check_component_arguments, matches
from lightly_mm_plugins.training.config import TrainConfig
from lightly_mm_plugins.training.validation import (
    FIELD_RULES,
    check_devices,
    validate_config,
    validate_values,
)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli_main(list(argv))
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
    return status, out.getvalue(), err.getvalue()


ZERO_OR_NEGATIVE = [
    (["--epochs", "0"], r"--epochs 0: must be a positive integer"),
    (["--epochs", "-2"], r"--epochs -2: must be a positive integer"),
    (["--image-size", "0"], r"--image-size 0: must be a positive integer"),
    (["--limit-train-samples", "0"], r"--limit-train-samples 0: must be a positive integer"),
    (["--devices", "0"], r"--devices 0: must be a positive number of devices"),
    (["--batch-size", "0"], r"--batch-size 0: must be an integer >= 2"),
    (["--batch-size", "1"], r"--batch-size 1: must be an integer >= 2"),
    (["--lr", "0"], r"--lr 0\.0: must be a positive number"),
    (["--lr=-1e-3"], r"--lr -0\.001: must be a positive number"),
    (["--lr", "nan"], r"--lr.*nan"),
    (["--weight-decay", "-1"], r"--weight-decay -1\.0: must be a number >= 0"),
    (["--warmup-epochs", "-0.5"], r"--warmup-epochs -0\.5: must be a number >= 0"),
    (["--num-workers", "-1"], r"--num-workers -1: must be an integer >= 0"),
    (["--seed", "-1"], r"--seed -1: must be an integer in \[0, 4294967295\]"),
    (["--checkpoint-every-n-steps", "-1"], r"--checkpoint-every-n-steps -1: must be an integer"),
    (["--precision", "17"], r"--precision 17: must be one of .*bf16-mixed"),
    (
        ["--limit-train-samples", "8", "--batch-size", "16"],
        r"--limit-train-samples 8 is smaller than --batch-size 16",
    ),
]

TYPE_ERRORS = [
    (
        ["--method-args", "projection_dim=abc"],
        r"--method-args: objective 'clip': projection_dim expects int, got 'abc' \(str\)",
    ),
    (
        ["--method-args", "projection_dim=64.5"],
        r"--method-args: objective 'clip': projection_dim expects int, got 64\.5 \(float\)",
    ),
    (
        ["--method-args", "temperature=warm"],
        r"--method-args: objective 'clip': temperature expects float, got 'warm' \(str\)",
    ),
    (
        ["--method-args", "learnable_temperature=3"],
        r"objective 'clip': learnable_temperature expects bool, got 3 \(int\)",
    ),
    (
        ["--view-args", "image_size=big"],
        r"--view-args: view 'clip': image_size expects int.*got 'big' \(str\)",
    ),
    (
        ["--method", "mcl", "--scheduler-args", "num_clusters=2.5"],
        r"--scheduler-args: stage scheduler 'mcl': num_clusters expects int, got 2\.5",
    ),
    (
        ["--method", "mcl", "--method-args", "projection_dim=abc"],
        r"--method-args: objective 'mcl' \(via 'clip'\): projection_dim expects int",
    ),
]


@pytest.mark.parametrize(
    "extra,message",
    ZERO_OR_NEGATIVE + TYPE_ERRORS,
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_bad_value_is_one_line_exit_2_and_nothing_starts(tmp_path: Path, extra, message) -> None:
    out = tmp_path / "run"
    argv = ["train", "--method", "clip", "--out", str(out), *extra]
    if "--method" in extra:
        argv = ["train", "--out", str(out), *extra]
    status, _, stderr = run_cli(*argv)
    assert status == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lightly-mm train: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in stderr and not out.exists()


def test_accelerator_gpu_without_a_gpu_is_refused(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--accelerator gpu: this machine has no usable GPU"):
        check_devices("gpu", "1")
    check_devices("cpu", "4")  # CPU processes (ddp_spawn) are not limited by GPUs


def test_more_gpus_than_the_machine_has_are_refused(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"--devices 3: this machine has 2 GPU\(s\)"):
        check_devices("gpu", "3")
    with pytest.raises(ConfigError, match=r"--devices 0,2: GPU indices must be below 2"):
        check_devices("auto", "0,2")
    check_devices("gpu", "2")
    check_devices("gpu", "0,1")


def test_console_script_prints_no_traceback_for_a_type_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "lightly_mm_plugins.cli", "train", "--method", "clip"),
            *("--method-args", "projection_dim=abc", "--out", str(tmp_path / "run")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_unparsable_flag_is_one_line_too() -> None:
    status, _, stderr = run_cli("train", "--method", "clip", "--epochs", "x")
    assert status == 2
    assert stderr.splitlines() == [
        "lightly-mm train: error: argument --epochs: expected int, got x "
        "(see lightly-mm train --help)"
    ]


def test_compare_checks_seeds_and_every_method_first(tmp_path: Path) -> None:
    status, _, stderr = run_cli("compare", "--methods", "clip", "--seeds", "0,x")
    assert status == 2 and "--seeds '0,x': must be comma-separated integers" in stderr
    status, _, stderr = run_cli(
        "compare", "--methods", "clip,mcl", "--epochs", "0", "--out", str(tmp_path / "c")
    )
    assert status == 2 and "--epochs 0" in stderr and not (tmp_path / "c").exists()


def test_the_api_validates_the_same_way(tmp_path: Path) -> None:
    from lightly_mm_plugins.training import train

    with pytest.raises(ConfigError, match=r"--epochs 0: must be a positive integer"):
        train(TrainConfig(epochs=0, out=str(tmp_path / "run")))
    with pytest.raises(ConfigError, match=r"--batch-size True"):
        validate_values(TrainConfig(batch_size=True))  # a bool is not a count
    assert not (tmp_path / "run").exists()


def test_every_config_field_has_a_rule() -> None:
    assert {f.name for f in fields(TrainConfig)} <= set(FIELD_RULES)
    validate_values(TrainConfig())  # the defaults pass


def test_defaults_and_good_values_pass() -> None:
    validate_config(TrainConfig(method="clip", epochs=1, image_size=8, devices="auto"))
    validate_config(
        TrainConfig(
            method="mcl", method_args={"projection_dim": 8}, scheduler_args={"num_clusters": 3}
        )
    )


def test_argument_names_are_still_checked() -> None:
    def factory(a: int = 1) -> None: ...

    with pytest.raises(ArgumentError, match="does not accept argument"):
        check_component_arguments(factory, {"b": 1}, "--method-args: objective 'x'")


def test_type_matching_rules() -> None:
    assert matches(3, int) and not matches(3.0, int) and not matches(True, int)
    assert matches(3, float) and matches(0.5, float) and not matches("0.5", float)
    assert matches(None, int | None) and matches([1, 2], tuple[int, ...])
    assert not matches([1, "a"], list[int]) and matches([1, "a"], tuple[int, str])
    assert matches("mask", Literal["mask", "group"]) and not matches("x", Literal["mask"])
    assert matches({"a": 1}, dict[str, int]) and not matches(["a"], dict)
    assert matches(object(), type(object()))  # unknown types accept anything
