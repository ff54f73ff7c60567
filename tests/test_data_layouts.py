"""Layouts (image roots, CSV/TSV options, Karpathy splits), start-up without reading
images, bad records met while training, and the evaluation split options."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lightly_mm_plugins.data import (
    BadRecordError,
    ViewDataset,
    load_csv,
    load_dataset,
    load_image_text,
    load_karpathy,
)
from lightly_mm_plugins.errors import DataError
from lightly_mm_plugins.training.datamodule import (
    EpochBatchSampler,
    MultimodalDataModule,
    SeededViews,
    SkippedRecordsReport,
    default_num_workers,
)
from lightly_mm_plugins.views import ModalityView

KINDS = {"image": "image", "text": "text"}


def make_image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((6, 6, 3), value, dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def coco(path: Path, names: list[str]) -> Path:
    images = [{"id": i, "file_name": n} for i, n in enumerate(names)]
    anns = [{"image_id": i, "caption": f"photo {i}"} for i in range(len(names))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns}, indent=1))
    return path


def first_pixel(ds, i: int) -> int:
    return int(np.asarray(ds[i].observations["image"][0])[0, 0, 0])


# --------------------------------------------------------------------------
# Image roots
# --------------------------------------------------------------------------


def test_coco_folder_with_images_beside_it_loads_with_and_without_image_root(tmp_path):
    for i in range(3):
        make_image(tmp_path / "images" / f"{i}.png", 10 * i)
    path = coco(tmp_path / "captions.json", [f"{i}.png" for i in range(3)])
    found = load_dataset(str(path), split="all")  # falls back to images/ beside the file
    given = load_dataset(str(path), split="all", image_root=str(tmp_path / "images"))
    assert [first_pixel(found, i) for i in range(3)] == [0, 10, 20]
    assert [first_pixel(given, i) for i in range(3)] == [0, 10, 20]
    # Relative to the annotation file wins over images/ when both have the file.
    make_image(tmp_path / "0.png", 99)
    ds, _ = load_image_text(path)
    assert first_pixel(ds, 0) == 99


def test_missing_image_names_every_place_looked_and_an_explicit_root_alone(tmp_path):
    path = coco(tmp_path / "ann" / "captions.json", ["gone.png"])
    ds, _ = load_image_text(path)
    with pytest.raises(BadRecordError) as info:
        ds[0]
    msg = str(info.value)
    assert msg.startswith(f"{path}:") and "(images[0]): missing image" in msg
    assert str(tmp_path / "ann" / "gone.png") in msg
    assert str(tmp_path / "ann" / "images" / "gone.png") in msg
    assert "--image-root" in msg
    root = tmp_path / "elsewhere"
    root.mkdir()
    ds, _ = load_image_text(path, image_root=root)
    with pytest.raises(BadRecordError, match=r"looked at '[^']*elsewhere/gone.png'\)"):
        ds[0]
    with pytest.raises(DataError, match=r"image root .* is not a folder"):
        load_dataset(str(path), image_root=str(tmp_path / "nope"))


# --------------------------------------------------------------------------
# CSV / TSV and Karpathy
# --------------------------------------------------------------------------


def test_tsv_and_csv_with_own_column_names_and_separator(tmp_path):
    for i in range(2):
        make_image(tmp_path / "imgs" / f"{i}.png", 50 + i)
    tsv = tmp_path / "train.tsv"
    tsv.write_text("filepath\ttitle\nimgs/0.png\ta, b and c\nimgs/1.png\tone\nimgs/0.png\tagain\n")
    ds, _ = load_csv(tsv, img_key="filepath", caption_key="title")
    assert [s.observations["text"] for s in ds.samples] == [["a, b and c", "again"], ["one"]]
    assert first_pixel(ds, 1) == 51
    semi = tmp_path / "s.csv"
    semi.write_text("img;cap\nimgs/1.png;x, y\n")
    ds = load_dataset(
        str(semi), split="all", csv_img_key="img", csv_caption_key="cap", csv_separator=";"
    )
    assert ds[0].observations["text"] == ["x, y"]
    with pytest.raises(DataError, match=r"s\.csv:1: bad CSV header.*--csv-img-key"):
        load_csv(semi)


def test_karpathy_split_file_uses_its_own_split_and_filepath(tmp_path):
    splits = ["train", "restval", "val", "test", "test"]
    images = []
    for i, split in enumerate(splits):
        make_image(tmp_path / "imgs" / "sub" / f"{i}.jpg", i)
        images.append(
            {
                "filename": f"{i}.jpg",
                "filepath": "sub",
                "split": split,
                "sentences": [{"raw": f"caption {i} a"}, {"raw": f"caption {i} b"}],
            }
        )
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    ds, _ = load_karpathy(path, image_root=tmp_path / "imgs")
    assert ds.splits == {"train": [0, 1], "val": [2], "test": [3, 4]}
    test = load_dataset(str(path), split="test", image_root=str(tmp_path / "imgs"))
    assert [s.observations["text"] for s in test.samples] == [
        ["caption 3 a", "caption 3 b"],
        ["caption 4 a", "caption 4 b"],
    ]
    assert test.instance_ids.tolist() == [3, 4]
    assert first_pixel(test, 1) == 4
    # --split-fractions does not override a file's own split.
    same = load_dataset(
        str(path), split="test", split_fractions=(0.2, 0.2), image_root=str(tmp_path / "imgs")
    )
    assert same.instance_ids.tolist() == [3, 4]


def test_split_fractions_change_the_seeded_split(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = [json.dumps({"image": f"{i}.png", "captions": [f"c{i}"]}) for i in range(100)]
    path.write_text("\n".join(lines))
    sizes = {
        s: len(load_dataset(str(path), split=s, split_fractions=(0.5, 0.1)))
        for s in ("train", "val", "test")
    }
    assert sizes == {"train": 50, "val": 10, "test": 40}
    assert len(load_dataset(str(path), split="train")) == 70


# --------------------------------------------------------------------------
# Start-up reads no image
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_100k_records_load_and_set_up_without_opening_any_image(tmp_path, monkeypatch):
    make_image(tmp_path / "images" / "a.png", 3)
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        for i in range(100_000):
            f.write(
                f'{{"image": "img{i % 7}.png", "captions": ["c{i}", "d{i}"]}}\n'
                if i % 7
                else f'{{"image": "a.png", "captions": ["c{i}"]}}\n'
            )
    opened: list[str] = []
    import PIL.Image

    real_open = PIL.Image.open

    def counting_open(fp, *a, **k):
        opened.append(str(fp))
        return real_open(fp, *a, **k)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    train = load_dataset(str(path), split="train")
    test = load_dataset(str(path), split="test")
    assert len(train) + len(test) < 100_000 and len(train) > 0  # 7 distinct images
    # Distinct images with many records each: grouped by image (folds).
    assert len(load_dataset(str(path), split="all")) == 7
    assert opened == []

    # A file of 100k distinct images: the data module (with a stage scheduler,
    # which needs every instance id) reads no sample either.
    path2 = tmp_path / "big2.jsonl"
    with path2.open("w") as f:
        for i in range(100_000):
            f.write(f'{{"image": "x/{i}.png", "captions": ["c{i}"], "label": {i % 3}}}\n')
    train = load_dataset(str(path2), split="train")

    from lightly_mm_plugins.api import SingleStageScheduler
    from lightly_mm_plugins.training.stage_driver import StageDriver

    stages = StageDriver(SingleStageScheduler(epochs=1))
    dm = MultimodalDataModule(train, train, ModalityView(KINDS), stages=stages)
    assert dm._instance_ids is not None and len(dm._instance_ids) == 70_000
    assert train.labels is not None and train.samples.fold_counts.sum() == 70_000
    assert opened == []
    assert default_num_workers(train) >= 0 and default_num_workers(load_dataset("default")) == 0


# --------------------------------------------------------------------------
# Bad records met while training
# --------------------------------------------------------------------------


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    """20 records; record 3 (line 4) names a missing file, 5 a truncated JPEG, 7 a text file."""
    names = []
    for i in range(20):
        names.append(f"{i}.jpg")
        make_image(tmp_path / "images" / f"{i}.jpg", 12 * i)
    (tmp_path / "images" / "3.jpg").unlink()
    good = (tmp_path / "images" / "4.jpg").read_bytes()
    big = tmp_path / "images" / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        big
    )
    (tmp_path / "images" / "5.jpg").write_bytes(big.read_bytes()[:300])
    (tmp_path / "images" / "7.jpg").write_text("not an image")
    assert good
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps({"image": n, "captions": [f"c{n}"]}) for n in names))
    return path


def loader_batches(views, sampler, workers: int, dm: MultimodalDataModule) -> list:
    loader = DataLoader(views, batch_sampler=sampler, collate_fn=dm.collate, num_workers=workers)
    return list(loader)


@pytest.mark.parametrize("workers", [0, 1])
def test_skip_fills_batches_with_the_next_records_and_reports_file_line(bad_folder, workers):
    ds = load_dataset(str(bad_folder), split="all")
    view = ModalityView(KINDS, image_size=8)
    dm = MultimodalDataModule(ds, ds, view, batch_size=4, num_workers=workers, on_error="skip")
    views = dm.train_views
    per_rank = []
    for rank in (0, 1):
        sampler = EpochBatchSampler(
            len(ds), 4, seed=0, epoch=0, world_size=2, rank=rank, shuffle=False
        )
        per_rank.append(loader_batches(views, sampler, workers, dm))
    report = SkippedRecordsReport()
    for batches in per_rank:
        for b in batches:
            assert b.observations["image"].shape == (4, 1, 3, 8, 8)  # full on every rank
            assert torch.isfinite(b.observations["image"]).all()
            assert not {3, 5, 7} & set(b.instance_ids.tolist())
            report.on_train_batch_start(None, None, b, 0)
            assert "skipped_records" not in b.extras  # taken off before the model
    # Global batch 0 is [0..7], batch 1 [8..15]: rank 0 has [0..3] and fills 3 from its
    # share of batch 1 ([8..11]); rank 1 has [4..7] and fills 5, 7 from [12..15]: no
    # instance twice in the global batch.
    assert per_rank[0][0].instance_ids.tolist() == [0, 1, 2, 8]
    assert per_rank[1][0].instance_ids.tolist() == [4, 12, 6, 13]
    text = report.summary()
    assert f"{bad_folder}:4: missing image" in text
    assert f"{bad_folder}:6: unreadable image" in text
    assert f"{bad_folder}:8: unreadable image" in text
    assert sum(report.skipped.values()) == 3


@pytest.mark.parametrize("workers", [0, 1])
def test_without_skip_a_bad_record_is_a_one_line_file_line_error(bad_folder, workers):
    ds = load_dataset(str(bad_folder), split="all")
    dm = MultimodalDataModule(ds, ds, ModalityView(KINDS, image_size=8), batch_size=4)
    sampler = EpochBatchSampler(len(ds), 4, seed=0, epoch=0, shuffle=False)
    with pytest.raises(BadRecordError) as info:
        loader_batches(dm.train_views, sampler, workers, dm)
    msg = str(info.value)
    assert msg.startswith(f"{bad_folder}:4: missing image") and "\n" not in msg


def test_eval_loader_leaves_bad_records_out(bad_folder):
    ds = load_dataset(str(bad_folder), split="all")
    dm = MultimodalDataModule(
        ds, ds, ModalityView(KINDS, image_size=8), batch_size=4, on_error="skip"
    )
    ids = [i for b in dm.eval_loader("test", batch_size=4) for i in b.instance_ids.tolist()]
    assert ids == [i for i in range(20) if i not in (3, 5, 7)]


def test_skipping_gives_up_when_nothing_is_readable(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        "\n".join(json.dumps({"image": f"{i}.png", "captions": ["x"]}) for i in range(6))
    )
    ds = load_dataset(str(path), split="all")
    views = SeededViews(ViewDataset(ds, ModalityView(KINDS)), seed=0, on_error="skip")
    with pytest.raises(DataError, match=r"unreadable records in a row.*--image-root"):
        views.__getitems__([0, 1])


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def test_retrieval_ks_below_the_gallery_and_a_small_gallery_warning():
    from lightly_mm_plugins.training.run import retrieval_ks

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert retrieval_ks(500) == (1, 5, 10)
    with pytest.warns(UserWarning, match=r"only 8 instance.*R@10 is not reported"):
        assert retrieval_ks(8) == (1, 5)
    with pytest.warns(UserWarning, match=r"only 3 instance.*R@5, R@10"):
        assert retrieval_ks(3) == (1,)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--split-fractions", "0.9,0.2"], "--split-fractions (0.9, 0.2): must be TRAIN,VAL"),
        (["--split-fractions", "half"], "--split-fractions half: must be TRAIN,VAL"),
        (["--image-root", "."], "--image-root: only apply to an annotation file"),
        (["--csv-separator", ";;"], "--csv-separator ;;: must be one character"),
        (["--test-data", "nope.jsonl"], "nope.jsonl: annotation file not found"),
    ],
)
def test_data_flags_are_validated_before_anything_starts(argv, message, capsys):
    from lightly_mm_plugins.cli import main

    assert main(["train", "--method", "clip", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_test_data_is_what_evaluation_reads(tmp_path):
    from lightly_mm_plugins.training.build import build_components
    from lightly_mm_plugins.training.config import TrainConfig

    for i in range(12):
        make_image(tmp_path / "images" / f"{i}.png", 10 * i)
    train_file = coco(tmp_path / "train.json", [f"{i}.png" for i in range(9)])
    test_file = tmp_path / "test.jsonl"
    test_file.write_text(
        "\n".join(json.dumps({"image": f"{i}.png", "captions": [f"t{i}"]}) for i in (9, 10, 11))
    )
    cfg = TrainConfig(data=str(train_file), test_data=str(test_file), batch_size=2, image_size=8)
    dm = build_components(cfg)["datamodule"]
    assert len(dm.train_set) == 9  # all of --data trains when --test-data is given
    texts = [t for b in dm.eval_loader("test") for row in b.observations["text"] for t in row]
    assert sorted(texts) == ["t10", "t11", "t9"]
