"""Collation: multifold padding, masks, instance ids, labels; data set and view plumbing."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

from lightly_mm_plugins.api import CollatedBatch, Sample
from lightly_mm_plugins.data import (
    MultimodalDataset,
    ViewDataset,
    collate_samples,
    load_dataset,
    select_split,
    split_indices,
)
from lightly_mm_plugins.errors import DataError
from lightly_mm_plugins.views import ModalityView

KINDS = {"image": "image", "text": "text", "x": "vector"}


def image(value: float) -> torch.Tensor:
    return torch.full((3, 4, 4), value)


def multifold_samples() -> list[Sample]:
    """Three instances with different numbers of observations per modality."""
    return [
        Sample(
            10,
            {"image": [image(1.0), image(2.0)], "text": ["a1", "a2", "a3"], "x": [torch.ones(5)]},
            label=4,
            extras={"labels": {"digit": 4, "parity": 0}},
        ),
        Sample(
            3,
            {"image": [image(3.0)], "text": ["b1"], "x": [torch.full((5,), 2.0)] * 2},
            label=1,
            extras={"labels": {"digit": 1, "parity": 1, "only_here": 7}},
        ),
        Sample(
            7,
            {"image": [image(4.0), image(5.0)], "text": ["c1", "c2"], "x": [torch.zeros(5)]},
            label=0,
            extras={"labels": {"digit": 0, "parity": 0}},
        ),
    ]


def test_multifold_collation_pads_masks_and_keeps_instance_ids():
    samples = multifold_samples()
    batch = collate_samples(samples, KINDS)
    assert isinstance(batch, CollatedBatch) and batch.batch_size == 3
    assert batch.instance_ids.dtype == torch.long and batch.instance_ids.tolist() == [10, 3, 7]
    assert batch.kinds == KINDS

    assert batch.observations["image"].shape == (3, 2, 3, 4, 4)
    assert batch.observations["x"].shape == (3, 2, 5)
    assert batch.observations["text"] == [["a1", "a2", "a3"], ["b1", "", ""], ["c1", "c2", ""]]
    assert batch.masks["image"].dtype == torch.bool
    assert batch.masks["image"].tolist() == [[True, True], [True, False], [True, True]]
    assert batch.masks["text"].tolist() == [
        [True, True, True],
        [True, False, False],
        [True, True, False],
    ]
    assert batch.masks["x"].tolist() == [[True, False], [True, True], [True, False]]
    # every real observation at [i, j], zeros at padding
    for i, s in enumerate(samples):
        for m in ("image", "x"):
            for j in range(batch.masks[m].shape[1]):
                got = batch.observations[m][i, j]
                if j < len(s.observations[m]):
                    assert torch.equal(got, s.observations[m][j])
                else:
                    assert not batch.masks[m][i, j] and torch.count_nonzero(got) == 0
    # the observations of one instance are found through its id, whatever the order
    row = batch.instance_ids.tolist().index(7)
    assert batch.observations["image"][row, 1, 0, 0, 0] == 5.0


def test_labels_and_extra_labels():
    batch = collate_samples(multifold_samples(), KINDS)
    assert batch.labels.dtype == torch.long and batch.labels.tolist() == [4, 1, 0]
    # only the keys every sample has
    assert set(batch.extras["labels"]) == {"digit", "parity"}
    assert batch.extras["labels"]["digit"].tolist() == [4, 1, 0]
    assert batch.extras["labels"]["parity"].dtype == torch.long

    samples = multifold_samples()
    samples[1].label = None
    del samples[2].extras["labels"]
    batch = collate_samples(samples, KINDS)
    assert batch.labels is None and "labels" not in batch.extras

    samples = multifold_samples()
    samples[0].label = torch.tensor(9)
    assert collate_samples(samples, KINDS).labels.tolist() == [9, 1, 0]
    samples[0].label = 2.5
    with pytest.raises(DataError, match="label of instance 10 must be an integer"):
        collate_samples(samples, KINDS)


def test_collate_only_the_modalities_asked_for():
    batch = collate_samples(multifold_samples(), {"text": "text"})
    assert set(batch.observations) == {"text"} and set(batch.masks) == {"text"}


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (
            lambda s: s[1].observations["image"].append(torch.zeros(3, 5, 5)),
            r"'image': observation 1 of instance 3 has shape \(3, 5, 5\)"
            r".*expected shape \(3, 4, 4\)",
        ),
        (
            lambda s: s[2].observations.__setitem__("x", [torch.zeros(6)]),
            r"'x': observation 0 of instance 7 has shape \(6,\)",
        ),
        (
            lambda s: s[2].observations.__setitem__("x", [torch.zeros(5, dtype=torch.float64)]),
            r"'x'.*instance 7.*float64",
        ),
        (
            lambda s: s[1].observations.pop("text"),
            r"instance 3 has no observation of modality 'text'",
        ),
        (
            lambda s: s[0].observations.__setitem__("text", []),
            r"instance 10 has no observation of modality 'text'",
        ),
        (
            lambda s: s[0].observations.__setitem__("image", ["raw.png"]),
            r"'image' \(image\) must hold tensors after the view, got str",
        ),
        (
            lambda s: s[2].observations["image"].__setitem__(0, "raw.png"),
            r"observation 0 of instance 7 has str",
        ),
        (
            lambda s: s[0].observations.__setitem__("image", [torch.zeros(4, 4)]),
            r"'image' \(image\): an observation must have shape \(C, H, W\), got \(4, 4\)",
        ),
        (
            lambda s: s[2].observations["text"].append(3),
            r"'text' \(text\): instance 7 has non-string observations \(int\)",
        ),
    ],
)
def test_inconsistent_input_is_a_clear_data_error(change, pattern):
    samples = multifold_samples()
    change(samples)
    with pytest.raises(DataError, match=pattern):
        collate_samples(samples, KINDS)


def test_empty_batch_and_unknown_kind():
    with pytest.raises(DataError, match="empty batch"):
        collate_samples([], KINDS)
    with pytest.raises(DataError, match="unknown kind 'audio'"):
        collate_samples(multifold_samples(), {"x": "audio"})


def test_digits_through_the_view_and_collation():
    ds = load_dataset("default", split="val")
    view = ModalityView(
        ds.modalities, views_per_modality={"image": 2, "text": None}, image_size=16, seed=0
    )
    samples = [ViewDataset(ds, view, train=True)[i] for i in range(6)]
    batch = collate_samples(samples, ds.modalities)
    n_caps = [len(ds[i].observations["text"]) for i in range(6)]
    assert batch.observations["image"].shape == (6, 2, 3, 16, 16)
    assert batch.masks["text"].sum(1).tolist() == n_caps
    assert batch.instance_ids.tolist() == [ds[i].instance_id for i in range(6)]
    assert batch.labels.tolist() == [ds[i].label for i in range(6)]
    assert set(batch.extras["labels"]) == {"digit", "parity", "large"}
    evaluated = ViewDataset(ds, view, train=False)
    assert evaluated.name == ds.name and len(evaluated) == len(ds)
    e = evaluated[0]
    assert e.observations["text"] == ds[0].observations["text"]  # all folds, unchanged
    assert e.observations["image"][0].shape == (3, 16, 16)
    assert torch.equal(e.observations["image"][0], evaluated[0].observations["image"][0])


def test_synthetic_through_a_dataloader():
    ds = load_dataset("synthetic", split="train", num_data=200)
    view = ModalityView(ds.modalities)
    loader = torch.utils.data.DataLoader(
        ViewDataset(ds, view), batch_size=16, collate_fn=lambda s: collate_samples(s, ds.modalities)
    )
    batch = next(iter(loader))
    assert batch.observations["x1"].shape == (16, 1, 100)
    assert batch.masks["x2"].all()
    assert set(batch.extras["labels"]) == {"shared", "unique1", "unique2", "all"}
    assert torch.equal(batch.labels, batch.extras["labels"]["all"])


def test_dataset_helpers():
    samples = [Sample(100 + i, {"text": [f"t{i}"]}, label=i % 3) for i in range(10)]
    ds = MultimodalDataset(samples, {"text": "text"}, name="toy")
    assert ds.labels.tolist() == [i % 3 for i in range(10)]
    sub = ds.subset([9, 2], name="two")
    assert sub.instance_ids.tolist() == [109, 102] and sub.name == "two"
    assert sub.modalities == ds.modalities
    with pytest.raises(DataError, match="out of range"):
        ds.subset([10])
    with pytest.raises(DataError, match="unknown modality kinds"):
        MultimodalDataset(samples, {"text": "words"})
    unlabeled = MultimodalDataset([Sample(0, {"text": ["a"]})], {"text": "text"})
    assert unlabeled.labels is None

    parts = split_indices(10, seed=0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [7, 2, 1]
    assert split_indices(10, seed=0) == parts and split_indices(10, seed=1) != parts
    assert split_indices(10, 0, fractions=(0.5, 0.5))["test"] == []
    with pytest.raises(ValueError, match="fractions"):
        split_indices(10, 0, fractions=(0.8, 0.3))
    assert select_split(ds, "val").instance_ids.tolist() == [100 + i for i in parts["val"]]
    assert select_split(ds, "all") is ds
    given = MultimodalDataset(samples, {"text": "text"}, splits={"train": [0], "test": [1, 2]})
    assert select_split(given, "test").instance_ids.tolist() == [101, 102]
    assert len(select_split(given, "val")) == 0
    with pytest.raises(DataError, match="unknown split"):
        select_split(ds, "dev")


@pytest.mark.parametrize("module", ["dataset", "collate", "embedded", "__init__"])
def test_docstring_examples_run(module):
    name = "lightly_mm_plugins.data" + ("" if module == "__init__" else f".{module}")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_unpadded_batch_stacks_in_one_piece_and_matches_the_padded_path():
    """No padding: one ``torch.stack``; the values equal the element-wise padded path."""
    full = [
        Sample(
            i, {"image": [image(float(i)), image(i + 0.5)], "x": [torch.full((5,), float(i))] * 2}
        )
        for i in range(4)
    ]
    batch = collate_samples(full, {"image": "image", "x": "vector"})
    assert batch.masks["image"].all() and batch.masks["x"].all()
    assert batch.observations["image"].shape == (4, 2, 3, 4, 4)
    for i in range(4):
        assert torch.equal(batch.observations["image"][i, 1], image(i + 0.5))
        assert torch.equal(batch.observations["x"][i, 0], torch.full((5,), float(i)))
    padded = [*full[:3], Sample(3, {"image": [image(3.0)], "x": [torch.full((5,), 3.0)]})]
    pbatch = collate_samples(padded, {"image": "image", "x": "vector"})
    assert pbatch.masks["image"].tolist() == [[True, True]] * 3 + [[True, False]]
    assert torch.equal(pbatch.observations["image"][:3], batch.observations["image"][:3])
    assert torch.equal(pbatch.observations["image"][3, 1], torch.zeros(3, 4, 4))


def _seeded_views(seed: int = 0):
    from lightly_mm_plugins.training.datamodule import SeededViews

    raw = MultimodalDataset(
        [Sample(i, {"x": [torch.full((3,), float(i))], "text": ["a", "b", "c"]}) for i in range(6)],
        {"x": "vector", "text": "text"},
    )

    class NoisyView(ModalityView):
        """Draws from torch's, Python's and NumPy's global generators."""

        def __call__(self, sample: Sample) -> Sample:
            import random

            import numpy as np

            out = super().__call__(sample)
            noise = torch.rand(3) + random.random() + float(np.random.rand())
            out.observations["x"] = [out.observations["x"][0] + noise]
            return out

    view = NoisyView({"x": "vector", "text": "text"})
    return SeededViews(ViewDataset(raw, view, train=True), seed)


def test_seeded_views_depend_only_on_seed_epoch_and_index():
    import random

    import numpy as np

    views = _seeded_views()
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    batched = views.__getitems__([4, 1, 5])
    # the caller's generators are untouched by the views' draws
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == before
    single = [views[i] for i in (4, 1, 5)]
    other_batch = views.__getitems__([5, 0, 2, 4])
    for a, b in zip(batched, single):
        assert torch.equal(a.observations["x"][0], b.observations["x"][0])
        assert a.observations["text"] == b.observations["text"]
    assert torch.equal(batched[0].observations["x"][0], other_batch[3].observations["x"][0])
    assert not torch.equal(batched[0].observations["x"][0], batched[1].observations["x"][0] + 3)
    views.epoch = 1
    next_epoch = views[4]
    assert not torch.equal(next_epoch.observations["x"][0], single[0].observations["x"][0])
    assert torch.equal(
        _seeded_views().__getitems__([4])[0].observations["x"][0], single[0].observations["x"][0]
    )
    assert not torch.equal(
        _seeded_views(seed=1)[4].observations["x"][0], single[0].observations["x"][0]
    )
