"""Issue #18 item 5: MCL says when its pseudo-label groups leave no negatives, and the
host says how many epochs the stages add up to."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import torch
from lightly_mm_mcl.scheduler import MCLScheduler, same_group_others, warn_if_no_negatives

from lightly_mm_plugins.api import StageContext


def test_same_group_others_counts_possible_negatives():
    assert same_group_others(torch.arange(5)) == 0.0  # all alone
    assert same_group_others(torch.zeros(4, dtype=torch.long)) == 3.0
    assert same_group_others(torch.tensor([0, 0, 1, 2])) == 0.5


def test_singleton_groups_warn_that_the_loss_is_exactly_zero(caplog):
    # 8 well separated points and 8 clusters: every instance is its own group.
    features = torch.eye(8) * 10
    sched = MCLScheduler(epochs=1, num_stages=2, num_clusters=8, kmeans="torch")
    with caplog.at_level(logging.WARNING, logger="lightly_mm_mcl.scheduler"):
        sched.on_stage_end(
            StageContext(stage=0, embed_training_set=lambda: (features, torch.arange(8)))
        )
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert "MCL stage 1: 8 pseudo-label groups over 8 instances (8 alone" in message
    assert "no negatives at all" in message and "loss is exactly 0" in message
    assert "num_clusters=8" in message


def test_groups_with_negatives_do_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="lightly_mm_mcl.scheduler"):
        others = warn_if_no_negatives(torch.tensor([0, 0, 0, 1, 1, 1]), 1, 2)
    assert others == 2.0 and not caplog.records
    with caplog.at_level(logging.WARNING, logger="lightly_mm_mcl.scheduler"):
        warn_if_no_negatives(torch.tensor([0, 0, 1, 2, 3, 4]), 2, 5)
    assert "almost no negatives (0.33 other instances" in caplog.records[0].getMessage()


def test_the_host_says_how_many_epochs_the_stages_add_up_to(capsys):
    from lightly_mm_plugins.training.config import TrainConfig
    from lightly_mm_plugins.training.run import _announce_schedule

    sched = MCLScheduler(epochs=2, num_stages=4)
    module = SimpleNamespace(scheduler=sched, total_epochs=8)
    parts = {"scheduler_name": "mcl", "epochs": 2}
    _announce_schedule(TrainConfig(method="mcl", epochs=2), module, parts)
    assert capsys.readouterr().out.strip() == (
        "'mcl' schedule: 4 stages, 4 x 2 = 8 epochs in all (--epochs counts per stage)"
    )
    _announce_schedule(TrainConfig(quiet=True), module, parts)
    assert capsys.readouterr().out == ""


def test_mcl_with_a_single_stage_scheduler_is_refused_not_run_as_its_inner_objective(tmp_path):
    # Issue #17 "no silent fallback": one stage of MCL is exactly plain CLIP.
    import pytest

    from lightly_mm_plugins.errors import LightlyMMError
    from lightly_mm_plugins.training.build import build_components
    from lightly_mm_plugins.training.config import TrainConfig

    cfg = TrainConfig(
        method="mcl", scheduler="single", data="synthetic", epochs=1, out=str(tmp_path / "r")
    )
    with pytest.raises(LightlyMMError, match=r"stage scheduler 'mcl'.*--scheduler single"):
        build_components(cfg)
