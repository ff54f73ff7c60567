"""What the training module leaves to Lightning and lightly (issue 19).

* a :class:`CollatedBatch` moves with Lightning's default batch transfer;
* lightly's ``CosineWarmupScheduler`` gives exactly the warm-up + cosine schedule the
  hand-made ``LambdaLR`` gave;
* the module's hyperparameters are in ``hparams`` (and so in checkpoints);
* the private loop counters read in ``training/loop_state.py`` still mean what the
  data module and callbacks take them to mean (fails when Lightning changes them).
"""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.apply_func import move_data_to_device
from torch import nn

from lightly_mm_plugins.api import CollatedBatch, SingleStageScheduler
from lightly_mm_plugins.encoders.vector import VectorEncoder
from lightly_mm_plugins.training.loop_state import batches_started, batches_started_this_epoch
from lightly_mm_plugins.training.module import MultimodalModule


def _batch() -> CollatedBatch:
    return CollatedBatch(
        observations={"a": torch.randn(3, 2, 4), "t": [["x", "y"], ["z", ""], ["w", ""]]},
        masks={
            "a": torch.ones(3, 2, dtype=torch.bool),
            "t": torch.tensor([[1, 1], [1, 0], [1, 0]]).bool(),
        },
        kinds={"a": "vector", "t": "text"},
        instance_ids=torch.arange(3),
        labels=torch.tensor([0, 1, 0]),
        extras={"note": "kept"},
    )


def test_collated_batch_moves_with_lightnings_default_transfer() -> None:
    batch = _batch()
    moved = move_data_to_device(batch, torch.device("meta"))
    assert isinstance(moved, CollatedBatch)
    tensors = [moved.observations["a"], *moved.masks.values(), moved.instance_ids, moved.labels]
    assert all(t.device.type == "meta" for t in tensors)
    assert moved.observations["t"] == batch.observations["t"]
    assert moved.kinds == batch.kinds and moved.extras == {"note": "kept"}
    assert batch.instance_ids.device.type == "cpu"  # the original is untouched
    assert "transfer_batch_to_device" not in MultimodalModule.__dict__


def _module(warmup_epochs: float, epochs: int, **kwargs) -> MultimodalModule:
    from lightly_mm_clip import CLIPObjective

    encoders = {
        "a": VectorEncoder(input_dim=4, hidden_dim=8, output_dim=8),
        "b": VectorEncoder(input_dim=4, hidden_dim=8, output_dim=8),
    }
    objective = CLIPObjective(embedding_dims={"a": 8, "b": 8}, modalities=("a", "b"))
    return MultimodalModule(
        encoders,
        objective,
        SingleStageScheduler(epochs),
        {"a": "vector", "b": "vector"},
        warmup_epochs=warmup_epochs,
        **kwargs,
    )


def _hand_made(step: int, warmup: int, total: int) -> float:
    """The LambdaLR factor the module used before lightly's scheduler."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@pytest.mark.parametrize(
    ("warmup_epochs", "epochs", "steps_per_epoch"),
    [(0.5, 3, 7), (0.0, 2, 5), (1.0, 4, 10), (2.5, 3, 4), (5.0, 2, 3), (0.5, 1, 1)],
)
def test_lr_schedule_equals_the_hand_made_warmup_cosine(
    warmup_epochs: float, epochs: int, steps_per_epoch: int
) -> None:
    from lightly.utils.scheduler import CosineWarmupScheduler

    module = _module(warmup_epochs, epochs)
    total = steps_per_epoch * epochs
    warmup = int(warmup_epochs * steps_per_epoch)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = CosineWarmupScheduler(opt, **module.lr_schedule(total))
    for step in range(total):  # every step an optimizer takes
        assert opt.param_groups[0]["lr"] == pytest.approx(
            _hand_made(step, warmup, total), abs=1e-12
        )
        opt.step()
        sched.step()


def test_hyperparameters_are_saved() -> None:
    module = _module(0.25, 2, lr=3e-3, seed=7)
    assert module.hparams["lr"] == 3e-3 and module.hparams["seed"] == 7
    assert module.hparams["warmup_epochs"] == 0.25
    assert module.hparams["kinds"] == {"a": "vector", "b": "vector"}
    assert not {"encoders", "objective", "scheduler"} & set(module.hparams)


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.seen: list[tuple[int, int, int, int]] = []

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.seen.append(
            (
                self.current_epoch,
                batch_idx,
                batches_started_this_epoch(self.trainer),
                batches_started(self.trainer),
            )
        )

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.randn(6, 2)), batch_size=2
        )


def test_private_loop_counters_mean_what_loop_state_says(tmp_path) -> None:
    model = _Tiny()
    trainer = pl.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    trainer.fit(model)
    # on_train_batch_start of batch b: b + 1 batches of the epoch taken, 3 * epoch + b + 1 in all
    assert model.seen == [(e, b, b + 1, 3 * e + b + 1) for e in range(2) for b in range(3)]


def test_evaluation_features_come_from_trainer_predict() -> None:
    from torch.utils.data import DataLoader

    from lightly_mm_plugins.api import Sample
    from lightly_mm_plugins.data import collate_samples
    from lightly_mm_plugins.training.features import collect_features

    g = torch.Generator().manual_seed(0)
    samples = [
        Sample(
            instance_id=i,
            observations={
                "a": [torch.randn(4, generator=g)],
                "b": [torch.randn(4, generator=g) for _ in range(1 + i % 2)],
            },
            label=i % 3,
        )
        for i in range(10)
    ]
    kinds = {"a": "vector", "b": "vector"}
    loader = DataLoader(samples, batch_size=4, collate_fn=lambda s: collate_samples(s, kinds))
    module = _module(0.5, 1)
    feats = collect_features(module, loader, progress=False)
    assert module.training  # mode restored
    with torch.no_grad():
        for m, rows in (("a", 10), ("b", 15)):
            expected = torch.cat([module.features(b, m) for b in loader])
            joint = torch.cat([module.features(b, m, joint=True) for b in loader])
            assert feats["features"][m].shape == (rows, 8)
            torch.testing.assert_close(feats["features"][m], expected)
            torch.testing.assert_close(feats["joint"][m], joint)
    assert feats["ids"]["b"].tolist() == [i for i in range(10) for _ in range(1 + i % 2)]
    assert feats["labels"] == {i: i % 3 for i in range(10)}


def test_the_stage_driver_maps_epochs_to_stages_and_asks_for_batches() -> None:
    from lightly_mm_plugins.api import StagePlan, StageScheduler
    from lightly_mm_plugins.training.stage_driver import StageDriver

    class TwoStages(StageScheduler):
        def num_stages(self) -> int:
            return 2

        def plan(self, stage: int) -> StagePlan:
            return StagePlan(epochs=(2, 3)[stage])

        def batch_sampler(self, stage, instance_ids, batch_size, world_size, rank, seed, epoch):
            return [[stage, epoch, seed]] if stage == 1 else None

    stages = StageDriver(TwoStages())
    assert stages.starts == [0, 2, 5] and stages.total_epochs == 5
    assert [stages.stage_of_epoch(e) for e in range(6)] == [0, 0, 1, 1, 1, 1]
    assert stages.batches(1, torch.arange(4), 2, 1, 0, seed=9) is None
    assert stages.batches(3, torch.arange(4), 2, 1, 0, seed=9) == [[1, 3, 9]]


def test_rank_local_objective_on_several_devices_warns_once_at_fit_start() -> None:
    import dataclasses
    import types
    import warnings

    from lightly_mm_plugins.api import DistributedKind

    module = _module(0.5, 1)
    module._trainer = types.SimpleNamespace(world_size=2)  # what on_fit_start reads
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.on_fit_start()  # CLIP gathers negatives across devices: nothing to say
    module.objective.requirements = dataclasses.replace(
        module.objective.requirements, distributed=DistributedKind.RANK_LOCAL
    )
    with pytest.warns(UserWarning, match="negatives come from one device's batch"):
        module.on_fit_start()
    module._trainer = types.SimpleNamespace(world_size=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.on_fit_start()
