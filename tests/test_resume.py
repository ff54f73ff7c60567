"""A run killed inside an epoch resumes to the weights of an uninterrupted run.

Tiny synthetic data (64 instances of two vector modalities, MLP encoders),
batch 8: 8 batches per epoch. ``checkpoint_every_n_steps=3`` writes
``last.ckpt`` after batches 3, 6, 9, 12, ... (never on an epoch's last batch:
the epoch-end checkpoint follows). ``stop_after_steps=k`` kills the run at
the start of batch k+1 without a further checkpoint, so the resumed run
repeats the batches after the last checkpoint, as after a real crash.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightly_mm_plugins.training import TrainConfig, train
from lightly_mm_plugins.training.checkpointing import load_checkpoint_file

BATCHES_PER_EPOCH = 8


# One intra-op thread per test module (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def config(out: Path, method: str = "clip", **overrides) -> TrainConfig:
    values = dict(
        method=method,
        data="synthetic",
        limit_train_samples=64,
        batch_size=8,
        epochs=2,
        checkpoint_every_n_steps=3,
        trace_batches=True,
        eval_init=False,
        eval_final=False,
        quiet=True,
        out=str(out),
    )
    values.update(overrides)
    return TrainConfig(**values)


def trace(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "batch_trace" / "rank0.jsonl").open()]


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Every parameter and buffer (encoders, momentum encoders, objective heads,
    queues, temperatures, stage snapshots) equal."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=1e-6, atol=1e-7, msg=key)


def assert_same_optimizers(a, b) -> None:
    """Optimizer moments and step counts, and the LR schedule position, equal."""
    opts_a, opts_b = a.trainer.optimizers, b.trainer.optimizers
    assert len(opts_a) == len(opts_b)
    for oa, ob in zip(opts_a, opts_b):
        state_a, state_b = oa.state_dict()["state"], ob.state_dict()["state"]
        assert state_a.keys() == state_b.keys() and state_a
        for idx in state_a:
            for name in state_a[idx]:
                torch.testing.assert_close(
                    state_a[idx][name], state_b[idx][name], rtol=1e-6, atol=1e-9
                )
        assert [g["lr"] for g in oa.param_groups] == [g["lr"] for g in ob.param_groups]
    sched_a = a.trainer.lr_scheduler_configs[0].scheduler
    sched_b = b.trainer.lr_scheduler_configs[0].scheduler
    assert sched_a.last_epoch == sched_b.last_epoch > 0


def interrupted_then_resumed(out: Path, stop: int, **overrides) -> tuple[dict, dict, int]:
    """Run until killed after ``stop`` batches, then ``--resume``; also the trace
    length of the killed part."""
    stopped = train(config(out, stop_after_steps=stop, **overrides))
    assert stopped["stopped_at_step"] == stop
    assert "trained" not in stopped and not (out / "encoders.pt").exists()
    killed_part = len(trace(out))
    resumed = train(config(out, resume=True, **overrides))
    return stopped, resumed, killed_part


class _CountingDataset(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n, self.loaded = n, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        self.loaded.append(index)
        return index


def test_loader_skips_at_the_sampler_level_without_loading_skipped_data():
    from lightly_mm_plugins.errors import CheckpointError
    from lightly_mm_plugins.training.datamodule import EpochBatchSampler, ResumableDataLoader

    sampler = EpochBatchSampler(40, batch_size=4, seed=3, epoch=2)
    everything = list(sampler)
    data = _CountingDataset(40)
    loader = ResumableDataLoader(data, sampler, epoch=2, collate_fn=list)
    assert len(loader) == 10
    loader.load_state_dict({"epoch": 2, "batches_done": 7, "num_batches": 10})
    assert len(loader) == 10  # Lightning counts the resumed epoch from batch 7
    assert list(loader) == everything[7:]
    assert sorted(data.loaded) == sorted(i for b in everything[7:] for i in b)
    assert loader.state_dict() == {"epoch": 2, "batches_done": 10, "num_batches": 10}
    with pytest.raises(CheckpointError, match="epoch 1"):
        loader.load_state_dict({"epoch": 1, "batches_done": 7, "num_batches": 10})
    with pytest.raises(CheckpointError, match="--batch-size"):
        loader.load_state_dict({"epoch": 2, "batches_done": 3, "num_batches": 5})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "full"
    return train(config(out)), out


@pytest.mark.parametrize(
    ("stop", "checkpoint_step"),
    [
        (5, 3),  # inside epoch 0: last checkpoint after batch 3, batches 4-5 are redone
        (11, 9),  # inside epoch 1: last checkpoint after its first batch
    ],
)
def test_killed_inside_an_epoch_resumes_to_the_uninterrupted_weights(
    uninterrupted, tmp_path, stop, checkpoint_step
):
    full, full_out = uninterrupted
    out = tmp_path / "run"
    _, resumed, killed_part = interrupted_then_resumed(out, stop)

    # The checkpoint the resume started from is a mid-epoch one: it records how
    # many of the epoch's batches were done, for the loader to skip.
    ckpt = load_checkpoint_file(out / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 1  # the final, epoch-end checkpoint of the resumed run
    epoch, batch = divmod(checkpoint_step, BATCHES_PER_EPOCH)

    # The resumed run trained exactly the batches after the checkpoint, with the
    # same instances as the uninterrupted run, and none of the skipped ones.
    full_trace, run_trace = trace(full_out), trace(out)
    assert [r["step"] for r in run_trace[:killed_part]] == list(range(stop))
    after = run_trace[killed_part:]
    assert (after[0]["epoch"], after[0]["batch"]) == (epoch, batch)
    assert after == full_trace[checkpoint_step:]

    assert_same_state(full["module"], resumed["module"])
    assert_same_optimizers(full["module"], resumed["module"])
    assert (out / "encoders.pt").is_file()


def test_without_the_loader_position_the_resume_differs(uninterrupted, tmp_path, monkeypatch):
    """The loader's skip is what makes the resume exact (the test above can fail)."""
    from lightly_mm_plugins.training import datamodule

    full, _ = uninterrupted
    monkeypatch.setattr(datamodule.ResumableDataLoader, "load_state_dict", lambda self, s: None)
    _, resumed, _ = interrupted_then_resumed(tmp_path / "run", 11)
    a, b = full["module"].state_dict(), resumed["module"].state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_holds_the_position_inside_the_epoch(tmp_path):
    out = tmp_path / "run"
    train(config(out, stop_after_steps=11))
    ckpt = load_checkpoint_file(out / "checkpoints" / "last.ckpt")
    # After batch 9 = epoch 1's first batch: epoch 1, one batch done.
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 9
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "batches_done": 1, "num_batches": BATCHES_PER_EPOCH}
    ]
    assert ckpt["lightly_mm"]["epochs_done"] == 1


def test_momentum_encoders_and_queues_resume_exactly(tmp_path):
    """CCT with a queue: EMA encoders and heads, the queue of keys, its ids, groups and
    write pointer; killed inside epoch 1."""
    args = dict(method="cct", method_args={"queue_size": 24})
    full = train(config(tmp_path / "full", **args))
    module = full["module"]
    assert module.momentum_encoders is not None
    assert int(module.objective.queue_ptr) != 0  # the queue wrapped around: real state
    _, resumed, _ = interrupted_then_resumed(tmp_path / "run", 11, **args)
    assert_same_state(module, resumed["module"])
    assert_same_optimizers(module, resumed["module"])


def test_manual_optimisation_with_an_auxiliary_optimizer_resumes_exactly(tmp_path):
    """FactorCL: Lightning manual optimisation, a second (critic) optimizer stepped
    twice per batch, the LR scheduler stepped by hand; killed inside epoch 0."""
    args = dict(method="factorcl", method_args={"auxiliary_steps": 2})
    full = train(config(tmp_path / "full", **args))
    module = full["module"]
    assert not module.automatic_optimization and len(module.trainer.optimizers) == 2
    _, resumed, _ = interrupted_then_resumed(tmp_path / "run", 7, **args)
    assert_same_state(module, resumed["module"])
    assert_same_optimizers(module, resumed["module"])


def test_multi_stage_mcl_resumes_inside_stage_one(tmp_path):
    """MCL, 2 stages of 1 epoch: killed in stage 1 (epoch 1, after k-means of stage 0),
    with its scheduler-made single-cluster batches; resumed from its first batch."""
    args = dict(method="mcl", epochs=1, scheduler_args={"num_stages": 2, "num_clusters": 2})
    full = train(config(tmp_path / "full", **args))
    _, resumed, killed_part = interrupted_then_resumed(tmp_path / "run", 11, **args)
    a, b = full["module"], resumed["module"]
    assert a.current_stage == b.current_stage == 1
    assert len(a.stage_snapshots) == len(b.stage_snapshots) == 1
    assert_same_state(a, b)
    assert_same_optimizers(a, b)
    la, lb = a.scheduler.state_dict(), b.scheduler.state_dict()
    assert torch.equal(la["cluster_labels"], lb["cluster_labels"])
    full_trace, run_trace = trace(tmp_path / "full"), trace(tmp_path / "run")
    assert run_trace[killed_part:] == full_trace[9:]
    assert run_trace[killed_part]["epoch"] == 1 and run_trace[killed_part]["batch"] == 1


def test_command_line_options_reach_the_config():
    import argparse

    from lightly_mm_plugins.training.cli_args import add_train_arguments
    from lightly_mm_plugins.training.config import config_from_args as _config_from_args

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    default = _config_from_args(parser.parse_args(["--method", "clip"]))
    assert default.checkpoint_every_n_steps == TrainConfig().checkpoint_every_n_steps == 500
    assert default.eval_init and default.eval_final and not default.trace_batches
    args = ["--method", "clip", "--checkpoint-every-n-steps", "7", "--no-eval", "--trace-batches"]
    cfg = _config_from_args(parser.parse_args(args))
    assert cfg.checkpoint_every_n_steps == 7 and cfg.trace_batches
    assert not cfg.eval_init and not cfg.eval_final
