"""Real data formats: round trips, every bad input with file and line, skip-and-count."""

from __future__ import annotations

import csv
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightly_mm_plugins.data import (
    ViewDataset,
    collate_samples,
    load_coco,
    load_csv,
    load_dataset,
    load_image_text,
    load_jsonl,
)
from lightly_mm_plugins.errors import DataError
from lightly_mm_plugins.views import ModalityView

COLORS = {
    "a.png": (255, 0, 0),
    "b.png": (0, 128, 0),
    "c.jpg": (0, 0, 255),
    "d.png": (40, 50, 60),
}


def make_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (6, 5)) -> None:
    """A small image with a colour and one marked pixel, so round trips are checkable."""
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[...] = color
    arr[0, 0] = (255, 255, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """``tmp_path/ann/imgs/{a,b,d}.png, c.jpg``; annotation files go to ``tmp_path/ann``."""
    for name, color in COLORS.items():
        make_image(tmp_path / "ann" / "imgs" / name, color)
    return tmp_path / "ann"


RECORDS = [
    {"image": "imgs/a.png", "captions": ["a red square", "red, with a white dot"], "label": 0},
    {"image": "imgs/b.png", "captions": ["a green square"], "label": 1},
    {"image": "imgs/c.jpg", "captions": ["blue", "a blue one", "BLUE!"], "label": 2},
]


def write_jsonl(path: Path, lines: list[object]) -> Path:
    """One line per entry: dicts as JSON, strings verbatim."""
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def write_coco(path: Path, images: list[dict], annotations: list[dict]) -> Path:
    """Pretty-printed like the COCO files, one key per line."""
    path.write_text(json.dumps({"images": images, "annotations": annotations}, indent=2))
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def check_round_trip(ds, expected: list[tuple[str, list[str], int | None]], root: Path) -> None:
    assert ds.modalities == {"image": "image", "text": "text"}
    assert len(ds) == len(expected)
    for i, (name, captions, label) in enumerate(expected):
        sample = ds[i]
        assert sample.instance_id == i
        assert sample.observations["text"] == captions
        assert sample.label == label
        (image,) = sample.observations["image"]
        assert image.mode == "RGB" and image.size == (6, 5)
        with Image.open(root / name) as ref:
            original = pixels(ref)
        # PNG is lossless; JPEG within a small tolerance
        tol = 0 if name.endswith(".png") else 40
        assert np.abs(pixels(image) - original).max() <= tol
        assert tuple(pixels(image)[2, 3]) == pytest.approx(COLORS[Path(name).name], abs=tol)


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------


def test_jsonl_round_trip_relative_to_the_annotation_file(folder, tmp_path, monkeypatch):
    path = write_jsonl(folder / "train.jsonl", RECORDS)
    monkeypatch.chdir(tmp_path)  # paths resolve against the file's folder, not the cwd
    ds, report = load_jsonl(path)
    check_round_trip(ds, [(r["image"], r["captions"], r["label"]) for r in RECORDS], folder)
    assert report.loaded == 3 and report.total_skipped == 0
    assert ds.labels.tolist() == [0, 1, 2]
    assert ds.splits is None


def test_jsonl_single_caption_string_no_label_and_image_root(folder, tmp_path):
    ann = tmp_path / "elsewhere" / "x.jsonl"
    ann.parent.mkdir()
    write_jsonl(
        ann,
        [{"image": "a.png", "caption": "  one caption  "}, {"image": "b.png", "captions": "two"}],
    )
    ds, _ = load_jsonl(ann, image_root=folder / "imgs")
    assert [s.observations["text"] for s in ds] == [["one caption"], ["two"]]
    assert [s.label for s in ds] == [None, None] and ds.labels is None


def test_jsonl_lines_of_one_image_merge_into_folds(folder):
    path = write_jsonl(
        folder / "dup.jsonl",
        [
            {"image": "imgs/a.png", "captions": ["x"], "label": 4},
            {"image": "imgs/b.png", "captions": ["y"]},
            {"image": "imgs/a.png", "captions": ["z", "w"]},
        ],
    )
    ds, _ = load_jsonl(path)
    assert [(s.observations["text"], s.label) for s in ds] == [(["x", "z", "w"], 4), (["y"], None)]


def test_coco_round_trip_groups_captions_of_an_image(folder):
    images = [
        {"id": 11, "file_name": "imgs/a.png"},
        {"id": 7, "file_name": "imgs/b.png"},
        {"id": 30, "file_name": "imgs/c.jpg"},
    ]
    annotations = [  # interleaved, as in COCO
        {"id": 1, "image_id": 7, "caption": "green 1"},
        {"id": 2, "image_id": 11, "caption": "red 1"},
        {"id": 3, "image_id": 30, "caption": "blue 1"},
        {"id": 4, "image_id": 11, "caption": "red 2 "},
        {"id": 5, "image_id": 7, "caption": "green 2"},
        {"id": 6, "image_id": 11, "caption": "red 3"},
    ]
    ds, report = load_coco(write_coco(folder / "captions_train.json", images, annotations))
    check_round_trip(
        ds,
        [
            ("imgs/a.png", ["red 1", "red 2", "red 3"], None),
            ("imgs/b.png", ["green 1", "green 2"], None),
            ("imgs/c.jpg", ["blue 1"], None),
        ],
        folder,
    )
    assert report.loaded == 3


def test_csv_round_trip_groups_rows_of_an_image(folder):
    path = write_csv(
        folder / "pairs.csv",
        ["image", "caption", "label"],
        [
            ["imgs/a.png", "red, with a comma", 0],
            ["imgs/c.jpg", "blue", 2],
            ["imgs/a.png", 'red "quoted"', 0],
            ["imgs/b.png", "green", 1],
            ["imgs/c.jpg", "a blue one", ""],
        ],
    )
    ds, report = load_csv(path)
    check_round_trip(
        ds,
        [
            ("imgs/a.png", ["red, with a comma", 'red "quoted"'], 0),
            ("imgs/c.jpg", ["blue", "a blue one"], 2),
            ("imgs/b.png", ["green"], 1),
        ],
        folder,
    )
    assert report.total_skipped == 0


def test_csv_without_label_column(folder):
    path = write_csv(folder / "p.csv", ["caption", "image"], [["red", "imgs/a.png"]])
    ds, _ = load_csv(path)
    assert ds[0].observations["text"] == ["red"] and ds[0].label is None


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_load_dataset_splits_files_70_15_15_fixed_and_disjoint(tmp_path, suffix):
    n = 20
    for i in range(n):
        make_image(tmp_path / "im" / f"{i}.png", (i * 10, 0, 0))
    captions = {i: [f"image {i}", f"picture {i}"] for i in range(n)}
    if suffix == ".jsonl":
        path = write_jsonl(
            tmp_path / "d.jsonl",
            [{"image": f"im/{i}.png", "captions": c, "label": i % 3} for i, c in captions.items()],
        )
    elif suffix == ".json":
        path = write_coco(
            tmp_path / "d.json",
            [{"id": i, "file_name": f"im/{i}.png"} for i in range(n)],
            [{"image_id": i, "caption": c} for i, cs in captions.items() for c in cs],
        )
    else:
        path = write_csv(
            tmp_path / "d.csv",
            ["image", "caption"],
            [[f"im/{i}.png", c] for i, cs in captions.items() for c in cs],
        )
    splits = {s: load_dataset(str(path), split=s) for s in ("train", "val", "test")}
    ids = {s: set(d.instance_ids.tolist()) for s, d in splits.items()}
    assert [len(ids[s]) for s in ("train", "val", "test")] == [14, 3, 3]
    assert ids["train"] | ids["val"] | ids["test"] == set(range(n))
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    again = load_dataset(str(path), split="test")
    assert again.instance_ids.tolist() == splits["test"].instance_ids.tolist()
    other_seed = load_dataset(str(path), split="test", seed=1)
    assert set(other_seed.instance_ids.tolist()) != ids["test"]
    for s in splits["test"]:
        i = int(s.observations["text"][0].split()[-1])
        assert s.observations["text"] == captions[i]
    assert len(load_dataset(str(path), split="all")) == n


def test_splits_named_in_the_file_are_used(folder):
    path = write_csv(
        folder / "s.csv",
        ["image", "caption", "split"],
        [
            ["imgs/a.png", "red", "train"],
            ["imgs/b.png", "green", "validation"],
            ["imgs/a.png", "red again", ""],
            ["imgs/c.jpg", "blue", "test"],
            ["imgs/d.png", "grey", "restval"],
        ],
    )
    names = {
        s: [x.observations["text"][0] for x in load_dataset(str(path), split=s)]
        for s in ("train", "val", "test")
    }
    assert names == {"train": ["red", "grey"], "val": ["green"], "test": ["blue"]}


def test_some_records_without_a_split_is_an_error(folder):
    path = write_jsonl(
        folder / "s.jsonl",
        [
            {"image": "imgs/a.png", "captions": ["r"], "split": "train"},
            {"image": "imgs/b.png", "captions": ["g"]},
        ],
    )
    with pytest.raises(DataError, match=r"s\.jsonl:2: missing split"):
        load_jsonl(path)


def test_file_data_flows_through_view_collate_and_pickle(folder):
    ds, _ = load_jsonl(write_jsonl(folder / "t.jsonl", RECORDS))
    ds = pickle.loads(pickle.dumps(ds))  # DataLoader worker processes pickle it
    view = ModalityView(
        ds.modalities, views_per_modality={"image": 2, "text": None}, image_size=8, seed=0
    )
    loader = torch.utils.data.DataLoader(
        ViewDataset(ds, view, train=True),
        batch_size=3,
        collate_fn=lambda s: collate_samples(s, ds.modalities),
    )
    batch = next(iter(loader))
    assert batch.observations["image"].shape == (3, 2, 3, 8, 8)
    assert batch.masks["text"].tolist() == [
        [True, True, False],
        [True, False, False],
        [True, True, True],
    ]
    assert batch.labels.tolist() == [0, 1, 2]


# --------------------------------------------------------------------------
# Bad input: file and line, fail fast, skip and count
# --------------------------------------------------------------------------


def corrupt(path: Path) -> Path:
    path.write_bytes(b"this is not an image at all")
    return path


def truncated_png(path: Path) -> Path:
    make_image(path, (9, 9, 9), size=(40, 40))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


GOOD = {"image": "imgs/a.png", "captions": ["fine"]}


def jsonl_case(folder: Path, bad: object) -> Path:
    """Line 1 good, line 2 bad, line 3 good."""
    return write_jsonl(
        folder / "bad.jsonl", [GOOD, bad, {"image": "imgs/b.png", "captions": ["ok"]}]
    )


JSONL_CASES = {
    "empty caption": ({"image": "imgs/c.jpg", "captions": ["good", "   "]}, "empty"),
    "bad JSON line": ('{"image": "imgs/c.jpg", "captions": ["x"]', "invalid JSON"),
    "not an object": ('["imgs/c.jpg", "x"]', "expected a JSON object"),
    "missing image key": ({"captions": ["x"]}, '"image"'),
    "empty image name": ({"image": " ", "captions": ["x"]}, '"image"'),
    "missing captions key": ({"image": "imgs/c.jpg"}, '"captions"'),
    "bad label": ({"image": "imgs/c.jpg", "captions": ["x"], "label": "cat"}, "not an integer"),
    "bad split": ({"image": "imgs/c.jpg", "captions": ["x"], "split": "holdout"}, "unknown"),
}
PROBLEM = {
    "not an object": "bad JSON line",
    "missing image key": "missing key",
    "empty image name": "missing key",
    "missing captions key": "missing key",
}


@pytest.mark.parametrize("case", sorted(JSONL_CASES))
def test_jsonl_bad_input_names_file_and_line(folder, case, caplog):
    corrupt(folder / "imgs" / "corrupt.png")
    truncated_png(folder / "imgs" / "trunc.png")
    bad, words = JSONL_CASES[case]
    path = jsonl_case(folder, bad)
    with pytest.raises(DataError) as info:
        load_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: "), message
    problem = PROBLEM.get(case, case)
    assert problem in message and words in message
    assert "; " in message  # problem; fix

    with caplog.at_level(logging.WARNING, logger="lightly_mm_plugins.data.formats"):
        ds, report = load_jsonl(path, on_error="skip")
    assert dict(report.skipped) == {problem: 1}
    assert report.examples[0].startswith(f"{path}:2: ")
    assert "skipped" in caplog.text and problem in caplog.text
    if case == "empty caption":  # only the caption goes; the record stays
        assert [s.observations["text"] for s in ds] == [["fine"], ["good"], ["ok"]]
    else:
        assert [s.observations["text"] for s in ds] == [["fine"], ["ok"]]
    assert report.loaded == len(ds)
    assert ds.report is report


def test_skip_counts_several_problems_and_only_empty_captions_is_no_captions(folder):
    path = write_jsonl(
        folder / "many.jsonl",
        [
            GOOD,
            {"image": "imgs/x.png", "captions": ["a"], "label": "x"},
            {"image": "imgs/y.png"},
            "{oops",
            {"image": "imgs/b.png", "captions": ["", ""]},
            "",
            {"image": "imgs/c.jpg", "captions": ["c"]},
        ],
    )
    with pytest.raises(DataError, match=rf"^{path}:2: bad label"):  # the first problem
        load_jsonl(path)
    ds, report = load_jsonl(path, on_error="skip")
    assert dict(report.skipped) == {
        "bad label": 1,
        "missing key": 1,
        "bad JSON line": 1,
        "empty caption": 2,
        "no captions": 1,
    }
    assert [s.observations["text"] for s in ds] == [["fine"], ["c"]]
    assert report.total_skipped == 6 and report.loaded == 2
    assert "empty caption: 2" in report.summary()


def test_nothing_usable_is_an_error_even_when_skipping(folder):
    path = write_jsonl(folder / "none.jsonl", [{"image": "imgs/nope.png", "captions": [" "]}])
    with pytest.raises(DataError, match="no usable instances"):
        load_jsonl(path, on_error="skip")


def test_bad_on_error_and_missing_annotation_file(folder):
    with pytest.raises(DataError, match="on_error"):
        load_jsonl(write_jsonl(folder / "t.jsonl", RECORDS), on_error="ignore")
    for loader, name in ((load_jsonl, "x.jsonl"), (load_coco, "x.json"), (load_csv, "x.csv")):
        with pytest.raises(DataError, match=r"x\.(jsonl|json|csv): annotation file not found"):
            loader(folder / name)


CSV_HEADER = ["image", "caption", "label"]


@pytest.mark.parametrize(
    ("row", "problem", "words"),
    [
        (["imgs/c.jpg", " ", ""], "empty caption", "empty"),
        (["", "x", ""], "missing key", "image field is empty"),
        (["imgs/c.jpg", "x", "1.5"], "bad label", "not an integer"),
        (["imgs/c.jpg", "x", "1", "extra"], "bad row", "fields"),
        (["imgs/c.jpg"], "bad row", "fields"),
        (["imgs/a.png", "x", "3"], "conflicting label", "label 3 here but 0"),
    ],
)
def test_csv_bad_rows_name_file_and_line(folder, row, problem, words):
    corrupt(folder / "imgs" / "corrupt.png")
    path = write_csv(
        folder / "bad.csv", CSV_HEADER, [["imgs/a.png", "fine", 0], row, ["imgs/b.png", "ok", 1]]
    )
    with pytest.raises(DataError) as info:
        load_csv(path)
    assert str(info.value).startswith(f"{path}:3: {problem}"), str(info.value)
    assert words in str(info.value)
    ds, report = load_csv(path, on_error="skip")
    assert dict(report.skipped) == {problem: 1}
    assert [s.observations["text"] for s in ds] == [["fine"], ["ok"]]


def test_csv_bad_header_is_reported_at_line_1_even_when_skipping(folder):
    path = write_csv(folder / "h.csv", ["file", "text"], [["imgs/a.png", "x"]])
    for on_error in ("raise", "skip"):
        with pytest.raises(DataError, match=rf"^{path}:1: bad CSV header.*'image'"):
            load_csv(path, on_error=on_error)


def test_csv_missing_image_is_reported_at_its_first_row_when_read(folder):
    path = write_csv(
        folder / "m.csv",
        CSV_HEADER,
        [
            ["imgs/a.png", "fine", 0],
            ["imgs/b.png", "ok", 1],
            ["imgs/gone.png", "x", 2],
            ["imgs/gone.png", "y", 2],
        ],
    )
    ds, report = load_csv(path)  # loading parses records only
    assert len(ds) == 3 and report.total_skipped == 0
    with pytest.raises(DataError, match=rf"^{path}:4: missing image"):
        ds[2]


COCO_IMAGES = [
    {"id": 1, "file_name": "imgs/a.png"},
    {"id": 2, "file_name": "imgs/b.png"},
]


def coco_line(path: Path, needle: str, occurrence: int = 0) -> int:
    """1-based line of the ``{`` opening the entry whose text contains ``needle``."""
    lines = path.read_text().splitlines()
    hits = [i for i, line in enumerate(lines) if needle in line]
    i = hits[occurrence]
    while lines[i].strip() != "{":
        i -= 1
    return i + 1


@pytest.mark.parametrize(
    ("images", "bad_ann", "problem", "needle"),
    [
        ([*COCO_IMAGES, {"id": 3}], None, "missing key", '"id": 3'),
        ([*COCO_IMAGES, {"id": 1, "file_name": "imgs/c.jpg"}], None, "duplicate id", "c.jpg"),
        ([*COCO_IMAGES, {"id": 3, "file_name": "imgs/c.jpg"}], None, "no captions", "c.jpg"),
        (COCO_IMAGES, {"image_id": 2, "caption": ""}, "empty caption", '"caption": ""'),
        (COCO_IMAGES, {"image_id": 9, "caption": "x"}, "missing key", '"image_id": 9'),
        (COCO_IMAGES, {"image_id": 2}, "missing key", '"image_id": 2'),
    ],
)
def test_coco_bad_entries_name_file_and_line(folder, images, bad_ann, problem, needle):
    corrupt(folder / "imgs" / "corrupt.png")
    anns = [{"image_id": 1, "caption": "red"}, {"image_id": 2, "caption": "green"}]
    if bad_ann is not None:
        anns.insert(1, bad_ann)
    if problem != "no captions" and any(img["id"] == 3 for img in images):
        anns.append({"image_id": 3, "caption": "the third image's caption"})
    path = write_coco(folder / "coco.json", images, anns)

    line = coco_line(path, needle)
    with pytest.raises(DataError) as info:
        load_coco(path)
    assert str(info.value).startswith(f"{path}:{line} "), (str(info.value), line)
    assert problem in str(info.value)
    ds, report = load_coco(path, on_error="skip")
    assert dict(report.skipped) == {problem: 1}
    assert [s.observations["text"] for s in ds] == [["red"], ["green"]]


def test_coco_on_one_line_and_bad_json(folder):
    path = folder / "one.json"
    path.write_text(json.dumps({"images": COCO_IMAGES, "annotations": [{"image_id": 7}]}))
    with pytest.raises(DataError, match=r"one\.json:1 \(annotations\[0\]\): missing key"):
        load_coco(path)
    path.write_text('{"images": [],\n "annotations": [\n  {"image_id": 1,, }\n]}')
    with pytest.raises(DataError, match=r"one\.json:3: bad JSON"):
        load_coco(path)
    path.write_text('{"images": []}')
    with pytest.raises(DataError, match=r"one\.json:1: missing key.*'annotations'"):
        load_coco(path)


def test_image_that_breaks_after_loading_names_its_record(folder):
    path = write_jsonl(folder / "late.jsonl", RECORDS)
    ds, _ = load_jsonl(path)
    corrupt(folder / "imgs" / "b.png")
    assert ds[0].observations["image"][0].size == (6, 5)
    with pytest.raises(DataError, match=rf"^{path}:2: unreadable image"):
        ds[1]


def test_load_dataset_forms_and_errors(folder, tmp_path):
    path = write_jsonl(folder / "t.jsonl", RECORDS)
    ds = load_dataset(str(path), split="all")
    assert len(ds) == 3
    ds2, _ = load_image_text(path)
    assert [s.observations["text"] for s in ds2] == [s.observations["text"] for s in ds]
    with pytest.raises(DataError, match=r"'default'.*synthetic.*jsonl.*COCO.*csv"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="annotation file not found"):
        load_dataset(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="unknown format"):
        load_image_text(tmp_path / "x.txt")
    with pytest.raises(DataError, match="unknown split"):
        load_dataset(str(path), split="training")
    with pytest.raises(DataError, match="on_error"):
        load_dataset(str(path), on_error="warn")
    skip = tmp_path / "skip.jsonl"
    write_jsonl(skip, [{"image": "ann/imgs/a.png", "captions": ["x"]}, "{"])
    assert dict(load_dataset(str(skip), split="all", on_error="skip").report.skipped) == {
        "bad JSON line": 1
    }
