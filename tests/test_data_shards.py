"""WebDataset shards: writing them, splitting by rank and worker, resume, bad samples;
and the done-when runs: a COCO folder of real photos and shards written from it."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from lightly_mm_plugins.data import BadRecordError, check_data_spec, load_dataset
from lightly_mm_plugins.data.shards import ShardBatches, ShardDataset, expand_shards, write_shards
from lightly_mm_plugins.errors import DataError
from lightly_mm_plugins.training.datamodule import MultimodalDataModule, ResumableShardLoader
from lightly_mm_plugins.views import ModalityView

KINDS = {"image": "image", "text": "text"}
ROOT = Path(__file__).resolve().parents[1]


def jsonl_folder(tmp: Path, n: int) -> Path:
    lines = []
    for i in range(n):
        Image.fromarray(np.full((5, 5, 3), i, dtype=np.uint8)).save(tmp / f"{i}.png")
        lines.append(
            json.dumps({"image": f"{i}.png", "captions": [f"a{i}", f"b{i}"], "label": i % 3})
        )
    path = tmp / "c.jsonl"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def shards(tmp_path) -> str:
    """24 samples in 8 shards of 3."""
    ds = load_dataset(str(jsonl_folder(tmp_path, 24)), split="all")
    return write_shards(ds, tmp_path / "shards", shard_size=3)["pattern"]


def test_to_shards_round_trip_and_brace_expansion(shards, tmp_path):
    assert shards == str(tmp_path / "shards" / "{000000..000007}.tar")
    assert len(expand_shards(shards)) == 8 and check_data_spec(shards) == "shards"
    ds = ShardDataset(shards)
    assert len(ds) == 24 and ds.sizes == [3] * 8
    samples = list(ds)
    pixels = sorted(int(np.asarray(s.observations["image"][0])[0, 0, 0]) for s in samples)
    assert pixels == list(range(24))
    by_pixel = {int(np.asarray(s.observations["image"][0])[0, 0, 0]): s for s in samples}
    assert by_pixel[5].observations["text"] == ["a5", "b5"] and by_pixel[5].label == 2
    with pytest.raises(DataError, match=r"shard '.*000008\.tar' not found \(and 1 more\)"):
        expand_shards(str(tmp_path / "shards" / "{000000..000009}.tar"))


def ids_of(batches) -> list[int]:
    return [s.instance_id for b in batches for s in b]


def test_shards_split_by_rank_and_worker_cover_every_sample_once_per_epoch(shards):
    ds = ShardDataset(shards)
    view = ModalityView(KINDS, image_size=4)
    seen: list[int] = []
    for rank in (0, 1):
        batches = ShardBatches(ds, view, 3, seed=1, epoch=0, world_size=2, rank=rank, num_workers=2)
        assert len(batches) == 4  # 2 workers x 2 shards x 3 samples / 3
        loader = DataLoader(batches, batch_size=None, num_workers=2, collate_fn=lambda b: b)
        got = list(loader)
        assert all(len(b) == 3 for b in got)
        seen += ids_of(got)
        # the worker streams (before batching) hold disjoint whole shards
        shards_of = [set(batches.assignment(rank, w)) for w in (0, 1)]
        assert not shards_of[0] & shards_of[1]
    assert sorted(seen) == sorted(s * 2**32 + p for s in range(8) for p in range(3))
    other = ShardBatches(ds, view, 3, seed=1, epoch=1, world_size=2, rank=0, num_workers=2)
    assert other.order() != ShardBatches(ds, view, 3, 1, 0, 2, 0, 2).order()  # reshuffled


def test_resume_inside_an_epoch_continues_with_the_same_batches(shards):
    ds = ShardDataset(shards)
    view = ModalityView(KINDS, image_size=4)
    full = ShardBatches(ds, view, 2, seed=0, epoch=3, num_workers=2)
    loader = ResumableShardLoader(full, 3, collate_fn=lambda b: b, num_workers=2)
    whole = list(loader)
    assert len(whole) == len(loader) == 12
    again = ShardBatches(ds, view, 2, seed=0, epoch=3, num_workers=2)
    resumed = ResumableShardLoader(again, 3, collate_fn=lambda b: b, num_workers=2)
    resumed.load_state_dict({"epoch": 3, "batches_done": 5, "num_batches": 12})
    rest = list(resumed)
    assert ids_of(rest) == ids_of(whole[5:])
    first = [b[0].observations["image"][0] for b in rest]
    assert all((a == b[0].observations["image"][0]).all() for a, b in zip(first, whole[5:]))


def bad_shard(tmp_path: Path) -> str:
    """One shard: 4 good samples, a truncated png at key 0002, a key with no caption."""
    path = tmp_path / "bad" / "000000.tar"
    path.parent.mkdir()
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for i in range(6):
            buf = io.BytesIO()
            Image.fromarray(np.full((9, 9, 3), i, dtype=np.uint8)).save(buf, format="PNG")
            data = buf.getvalue()[:40] if i == 2 else buf.getvalue()
            add(f"{i:04d}.png", data)
            if i != 4:
                add(f"{i:04d}.txt", f"caption {i}".encode())
    return str(path)


def test_bad_samples_in_a_shard_are_skipped_and_counted_or_a_named_error(tmp_path):
    spec = bad_shard(tmp_path)
    view = ModalityView(KINDS, image_size=4)
    ds = ShardDataset(spec, on_error="skip")
    batches = ShardBatches(ds, view, 2, seed=0, epoch=0)
    got = list(batches)
    assert len(got) == 3 and all(len(b) == 2 for b in got)
    skipped = [t for b in got for t in b.skipped]
    assert len(skipped) >= 2  # 6 keys, 4 good: the stream wraps to fill 3 batches
    assert any(f"{spec}:0002: unreadable image" in s for s in skipped)
    assert any(f"{spec}:0004: no captions" in s for s in skipped)
    with pytest.raises(BadRecordError, match=r"000000\.tar:0002: unreadable image"):
        list(ShardBatches(ShardDataset(spec), view, 2, seed=0, epoch=0))


def test_too_few_shards_for_devices_times_workers_is_an_error(shards):
    ds = ShardDataset(shards)
    with pytest.raises(DataError, match=r"8 shard\(s\) cannot feed 2 device\(s\) x 5 loader"):
        ShardBatches(ds, ModalityView(KINDS), 2, 0, 0, world_size=2, num_workers=5)


def test_shards_in_the_data_module_default_workers_fit_the_shards(shards):
    ds = ShardDataset(shards)
    dm = MultimodalDataModule(
        ds, ds, ModalityView(KINDS, image_size=4), batch_size=2, num_workers=None
    )
    assert dm.batches_per_epoch() == len(dm.train_dataloader())
    assert sum(len(b.instance_ids) for b in dm.eval_loader("test", batch_size=5)) == 24


# --------------------------------------------------------------------------
# Done when: photos in a COCO folder, and shards written from it, train
# --------------------------------------------------------------------------


def photo_folder(tmp_path: Path) -> Path:
    spec = importlib.util.spec_from_file_location(
        "photo_captions", ROOT / "examples" / "photo_captions.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_coco_photos(tmp_path / "photos")


@pytest.mark.slow
def test_coco_folder_of_photos_and_its_shards_train_from_the_command_line(tmp_path, capsys):
    from lightly_mm_plugins.cli import main

    captions = photo_folder(tmp_path)
    images = captions.parent / "images"
    tiny = ["--epochs", "1", "--batch-size", "4", "--image-size", "16", "--quiet", "--no-eval"]
    tiny += ["--num-workers", "0", "--checkpoint-every-n-steps", "0"]
    out = tmp_path / "run-coco"
    argv = ["train", "--method", "clip", "--data", str(captions), "--image-root", str(images)]
    assert main([*argv, *tiny, "--out", str(out)]) == 0
    assert (out / "encoders.pt").is_file()
    # without --image-root: found in images/ beside the annotation file
    assert main([*argv[:-2], *tiny, "--out", str(tmp_path / "run-coco2")]) == 0

    shards_dir = tmp_path / "shards"
    assert main(["data", "to-shards", str(captions), str(shards_dir), "--shard-size", "7"]) == 0
    assert "wrote 14 samples in 2 shard(s)" in capsys.readouterr().out
    out = tmp_path / "run-shards"
    spec = str(shards_dir / "{000000..000001}.tar")
    assert main(["train", "--method", "clip", "--data", spec, *tiny, "--out", str(out)]) == 0
    assert (out / "encoders.pt").is_file()
    # shards have no held-out split: evaluation needs --test-data
    assert main(["train", "--method", "clip", "--data", spec, "--out", str(out)]) == 2
    assert "--test-data" in capsys.readouterr().err


@pytest.mark.slow
# The run shows no Lightning warning about the shard loader's length (it is exact).
@pytest.mark.filterwarnings("error:Your `IterableDataset` has `__len__`:UserWarning")
@pytest.mark.parametrize("layout", ["file", "shards"])
def test_killed_run_on_photos_with_a_loader_worker_resumes_to_the_same_weights(tmp_path, layout):
    """Exact mid-epoch resume with decoding in a worker process, for files and shards."""
    import torch

    from lightly_mm_plugins.training import TrainConfig, train

    captions = photo_folder(tmp_path)
    data = str(captions)
    if layout == "shards":
        ds = load_dataset(data, split="all")
        data = write_shards(ds, tmp_path / "shards", shard_size=7)["pattern"]
    common = dict(
        method="clip",
        data=data,
        batch_size=2,
        epochs=1,
        image_size=16,
        num_workers=1,
        checkpoint_every_n_steps=2,
        eval_init=False,
        eval_final=False,
        quiet=True,
    )
    if layout == "file":
        common["split_fractions"] = (1.0, 0.0)
    whole = train(TrainConfig(**common, out=str(tmp_path / "whole")))["module"]
    crash = TrainConfig(**common, out=str(tmp_path / "cut"), stop_after_steps=5)
    train(crash)
    resumed = train(TrainConfig(**common, out=str(tmp_path / "cut"), resume=True))["module"]
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)
