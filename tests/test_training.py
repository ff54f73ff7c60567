"""The main job end to end on the embedded data (CPU, small, fixed seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightly_mm_plugins.errors import CheckpointError, LightlyMMError
from lightly_mm_plugins.training import TrainConfig, train


def small(tmp_path, name: str, **overrides) -> TrainConfig:
    values = dict(
        method="clip",
        epochs=2,
        batch_size=64,
        limit_train_samples=512,
        out=str(tmp_path / name),
        quiet=True,
        lr=2e-3,
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clip")
    return train(small(tmp, "run")), tmp / "run"


def test_two_epochs_lower_the_loss_and_beat_random_init(clip_run):
    results, out = clip_run
    rows = [
        json.loads(json.dumps(r))
        for r in __import__("csv").DictReader(
            next((out / "logs").glob("version_*/metrics.csv")).open()
        )
    ]
    losses = [(int(r["epoch"]), float(r["train_loss"])) for r in rows if r.get("train_loss")]
    first = [v for e, v in losses if e == 0]
    last = [v for e, v in losses if e == 1]
    assert sum(last) / len(last) < sum(first) / len(first)
    init, trained = results["init"], results["trained"]
    assert trained["linear_probe/image"] > init["linear_probe/image"]
    assert trained["retrieval/image_to_text_R@10"] > init["retrieval/image_to_text_R@10"]


def test_loss_every_step_diagnostics_every_tenth_batch(clip_run):
    """``train_loss`` is logged at every step; the objective's diagnostics (here the
    temperature, a tensor: no host sync) at every ``diagnostics_every_n_steps``-th
    batch of an epoch (default 10; 8 batches per epoch here: batch 0 only), as one
    epoch-mean row per epoch (at the epoch's last step)."""
    import csv

    _, out = clip_run
    rows = list(csv.DictReader(next((out / "logs").glob("version_*/metrics.csv")).open()))
    loss_steps = sorted(int(r["step"]) for r in rows if r.get("train_loss"))
    temp_steps = sorted(int(r["step"]) for r in rows if r.get("train/temperature"))
    assert loss_steps == list(range(16))
    assert temp_steps == [7, 15]
    assert all(
        0.0 < float(r["train/temperature"]) < 1.0 for r in rows if r.get("train/temperature")
    )


def test_outputs_are_written_and_load_safely(clip_run):
    _, out = clip_run
    for name in ("encoders.pt", "metrics.json", "loss_curve.png", "results.png"):
        assert (out / name).is_file(), name
    exported = torch.load(out / "encoders.pt", weights_only=True)
    assert set(exported["encoders"]) == {"image", "text"}
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["lightly_mm"]["objective_class"].endswith("CLIPObjective")
    metrics = json.loads((out / "metrics.json").read_text())
    assert "retrieval/text_to_image_R@1" in metrics["trained"]
    assert any(p.startswith("lightly-mm-clip==") for p in metrics["plugins"])


def _weights(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_resume_after_epoch_one_equals_uninterrupted(tmp_path):
    common = dict(limit_train_samples=256, eval_init=False)
    full = train(small(tmp_path, "full", **common))
    stopped = train(small(tmp_path, "resumed", stop_after_epochs=1, **common))
    assert stopped["stopped_at_epoch"] == 1
    resumed = train(small(tmp_path, "resumed", resume=True, **common))
    a, b = _weights(full["module"]), _weights(resumed["module"])
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=key)


def test_resume_with_another_method_is_refused(tmp_path):
    train(
        small(
            tmp_path, "run", limit_train_samples=128, epochs=1, eval_init=False, stop_after_epochs=1
        )
    )
    with pytest.raises(CheckpointError, match="objective"):
        train(
            small(
                tmp_path,
                "run",
                method="mxm-clr",
                limit_train_samples=128,
                epochs=1,
                resume=True,
                eval_init=False,
            )
        )


def test_unwritable_output_dir_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LightlyMMError, match="output directory"):
        train(small(tmp_path, "file/sub"))


def test_each_probe_is_fitted_once_and_shown_once(clip_run):
    """The digits' ``digit`` label set is the data set's labels: its probe is the main one."""
    from lightly_mm_plugins.training.report import format_results_table

    results, _ = clip_run
    trained = results["trained"]
    assert trained["linear_probe/image[digit]"] == trained["linear_probe/image"]
    assert results["metric_aliases"]["linear_probe/joint[digit]"] == "linear_probe/joint"
    table = format_results_table(results, small(Path("."), "run"))
    assert "linear_probe/image[digit]" not in table and "linear_probe/image " in table
    assert "(label set 'digit' = the data set's labels" in table


def test_nothing_measured_says_why_not_skipped():
    from lightly_mm_plugins.training.config import TrainConfig
    from lightly_mm_plugins.training.report import format_results_table

    ran = {"trained": {}, "resolved": {"modalities": {"x": "vector"}}}
    table = format_results_table(ran, TrainConfig())
    assert "(evaluation skipped" not in table
    assert "(nothing measured: the data set has no labels" in table and "one modality" in table
    skipped = format_results_table({}, TrainConfig(eval_final=False))
    assert "(evaluation skipped: --no-eval)" in skipped
