"""MCL through the host pipeline: a run interrupted inside stage 1 resumes exactly."""

from __future__ import annotations

import torch

from lightly_mm_plugins.training import TrainConfig, train


def config(out, **overrides) -> TrainConfig:
    values = dict(
        method="mcl",
        epochs=2,
        batch_size=32,
        limit_train_samples=128,
        scheduler_args={"num_stages": 2, "num_clusters": 3},
        eval_init=False,
        quiet=True,
        out=str(out),
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_resume_inside_stage_one_equals_uninterrupted(tmp_path):
    full = train(config(tmp_path / "full"))
    stopped = train(config(tmp_path / "resumed", stop_after_epochs=3))
    assert stopped["stopped_at_epoch"] == 3  # epochs 0-1 are stage 0, 2-3 stage 1
    resumed = train(config(tmp_path / "resumed", resume=True))
    a, b = full["module"], resumed["module"]
    assert len(a.stage_snapshots) == len(b.stage_snapshots) == 1
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=1e-6, atol=1e-7, msg=key)
    la, lb = a.scheduler.state_dict(), b.scheduler.state_dict()
    torch.testing.assert_close(la["cluster_labels"], lb["cluster_labels"])
    assert "trained" in full and "trained" in resumed
