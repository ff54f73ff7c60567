"""Negative mask exactness and the MCLObjective wrapper."""

from __future__ import annotations

import math

import pytest
import torch
from lightly_mm_mcl.objective import MCLObjective

import lightly_mm_plugins as lmm
from lightly_mm_plugins import hookimpl
from lightly_mm_plugins.api import EncodedBatch, Objective, ObjectiveOutput, Requirements
from lightly_mm_plugins.losses import cross_modal_info_nce
from lightly_mm_plugins.manager import PluginHost

GROUPS = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 0])


def _row_loss_by_hand(a, b, i, groups, tau):
    """-log softmax over the same-group keys only (in-cluster negatives), as a loop."""
    an = a / a.norm(dim=1, keepdim=True)
    bn = b / b.norm(dim=1, keepdim=True)
    num = math.exp(float(an[i] @ bn[i]) / tau)
    den = sum(math.exp(float(an[i] @ bn[j]) / tau) for j in range(len(a)) if groups[j] == groups[i])
    return -math.log(num / den)


def test_masked_info_nce_row_ignores_other_groups_exactly():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(9, 5, generator=g, dtype=torch.float64)
    b = torch.randn(9, 5, generator=g, dtype=torch.float64)
    tau = 0.2
    masked = cross_modal_info_nce(a, b, tau, pseudo_labels=GROUPS)
    # by hand: mean over rows of both directions, each row softmaxed within its group
    rows_ab = [_row_loss_by_hand(a, b, i, GROUPS, tau) for i in range(9)]
    rows_ba = [_row_loss_by_hand(b, a, i, GROUPS, tau) for i in range(9)]
    assert masked.item() == pytest.approx(0.5 * (sum(rows_ab) + sum(rows_ba)) / 9, rel=1e-12)
    # == InfoNCE on each group's subset alone, weighted by the group's share of rows
    subsets = sum(
        int((GROUPS == k).sum()) / 9 * cross_modal_info_nce(a[GROUPS == k], b[GROUPS == k], tau)
        for k in GROUPS.unique()
    )
    torch.testing.assert_close(masked, subsets, rtol=1e-12, atol=0)
    # moving another group's samples changes nothing for group 0's rows
    a2, b2 = a.clone(), b.clone()
    a2[GROUPS == 1] = torch.randn(2, 5, generator=g, dtype=torch.float64)
    b2[GROUPS == 2] = torch.randn(3, 5, generator=g, dtype=torch.float64)
    for i in (GROUPS == 0).nonzero().flatten().tolist():
        assert _row_loss_by_hand(a2, b2, i, GROUPS, tau) == pytest.approx(
            _row_loss_by_hand(a, b, i, GROUPS, tau), rel=1e-12
        )
    # and without groups it is ordinary InfoNCE over the whole batch (all one group)
    torch.testing.assert_close(
        cross_modal_info_nce(a, b, tau, pseudo_labels=torch.zeros(9, dtype=torch.long)),
        cross_modal_info_nce(a, b, tau),
    )


def test_masked_info_nce_gradient_to_other_groups_is_zero_for_a_group_row():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    # the loss of group 0 alone: other groups' rows carry no gradient at all
    keep = GROUPS == 0
    loss = cross_modal_info_nce(a[keep], b[keep], 0.1)
    full = cross_modal_info_nce(a, b, 0.1, pseudo_labels=GROUPS)
    ga = torch.autograd.grad(full, a, retain_graph=True)[0]
    gsub = torch.autograd.grad(loss, a)[0]
    torch.testing.assert_close(ga[keep], gsub[keep] * keep.sum() / 9, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x, y: cross_modal_info_nce(x, y, 0.3, pseudo_labels=GROUPS), (a, b)
    )


def _clip_batch(n=9, seed=0, groups=GROUPS):
    g = torch.Generator().manual_seed(seed)
    return EncodedBatch.from_tensors(
        {"image": torch.randn(n, 12, generator=g), "text": torch.randn(n, 6, generator=g)},
        pseudo_labels=groups,
    )


def test_wrapper_with_clip_equals_info_nce_on_same_group_subsets():
    torch.manual_seed(0)
    obj = MCLObjective(
        {"image": 12, "text": 6}, inner="clip", inner_kwargs={"projection_dim": 8}
    ).double()
    assert obj.requirements.pseudo_labels and obj.requirements == obj.inner.requirements
    batch = _clip_batch()
    batch = batch.replace(embeddings={m: e.double() for m, e in batch.embeddings.items()})
    loss = obj(batch).loss
    heads, tau = obj.inner.heads, obj.inner.loss_fn.temperature
    za = heads["image"](batch.view("image"))
    zb = heads["text"](batch.view("text"))
    expected = sum(
        int((GROUPS == k).sum()) / 9 * cross_modal_info_nce(za[GROUPS == k], zb[GROUPS == k], tau)
        for k in GROUPS.unique()
    )
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    obj.set_stage(0)  # what a stage driver does: stage 0 trains without pseudo labels
    unrestricted = obj(batch.replace(pseudo_labels=None)).loss
    assert not torch.allclose(loss, unrestricted)


def test_training_without_pseudo_labels_or_stages_is_an_error():
    """In a script without MCLStages, MCL would silently be plain CLIP: refused."""
    obj = MCLObjective({"image": 12, "text": 6}, inner="clip")
    batch = _clip_batch().replace(pseudo_labels=None)
    with pytest.raises(RuntimeError, match=r"lightly_mm_mcl\.MCLStages"):
        obj(batch)
    obj.eval()(batch)  # evaluation (no training) is fine
    obj.train()(_clip_batch())  # pseudo labels given by hand: fine
    obj.set_stage(0)
    obj(batch)  # a stage driver announced stage 0


def test_wrapper_forwards_kwargs_and_delegates():
    torch.manual_seed(0)
    obj = MCLObjective({"image": 12, "text": 6}, projection_dim=4, temperature=0.5)
    torch.manual_seed(0)
    direct = lmm.create_objective(
        "clip", embedding_dims={"image": 12, "text": 6}, projection_dim=4, temperature=0.5
    )
    batch = _clip_batch(seed=2)
    torch.testing.assert_close(obj(batch).loss, direct(batch).loss)
    assert obj.inner.loss_fn.temperature == pytest.approx(0.5)
    x = torch.randn(3, 12)
    assert torch.equal(obj.representation("image", x), direct.representation("image", x))
    torch.testing.assert_close(obj.joint_embedding("image", x), direct.joint_embedding("image", x))
    assert set(obj.state_dict()) == {f"inner.{k}" for k in direct.state_dict()}
    with pytest.raises(ValueError, match="modality 'text' missing"):
        obj(EncodedBatch.from_tensors({"image": torch.randn(4, 12)}))


def test_wrapper_composes_with_cct():
    kwargs = {"embedding_dims": {"image": 12, "text": 6}, "modalities": ("image", "text")}
    torch.manual_seed(3)
    obj = MCLObjective(**kwargs, inner="cct")
    torch.manual_seed(3)
    direct = lmm.create_objective("cct", **kwargs)
    assert obj.requirements == direct.requirements
    g = torch.Generator().manual_seed(4)
    v = direct.requirements.views_needed("image")
    batch = EncodedBatch.from_tensors(
        {"image": torch.randn(9, v, 12, generator=g), "text": torch.randn(9, 1, 6, generator=g)},
        pseudo_labels=GROUPS,
    )
    torch.manual_seed(5)
    a = obj(batch).loss
    torch.manual_seed(5)
    b = direct(batch).loss
    torch.testing.assert_close(a, b)


class _NoPseudo(Objective):
    requirements = Requirements(pseudo_labels=False)

    def __init__(self, embedding_dims, modalities=("image", "text")):
        super().__init__(embedding_dims, modalities)
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, batch):
        return ObjectiveOutput(loss=self.w * 0)


class _TestPlugin:
    @hookimpl
    def register_objectives(self, register):
        register("no-pseudo", _NoPseudo, description="ignores pseudo labels")


@pytest.fixture
def host_with_no_pseudo():
    host = PluginHost(strict=True)
    host.register_plugin(_TestPlugin(), name="mcl-test-plugin")
    lmm.reset_host(host)
    yield host
    lmm.reset_host(None)


def test_wrapper_rejects_inner_without_pseudo_label_support(host_with_no_pseudo):
    with pytest.raises(ValueError, match=r"does not declare requirements\.pseudo_labels"):
        MCLObjective({"image": 4, "text": 4}, inner="no-pseudo")
    with pytest.raises(ValueError, match="not registered"):
        MCLObjective({"image": 4, "text": 4}, inner="no-such-objective")
    with pytest.raises(ValueError, match="itself"):
        MCLObjective({"image": 4, "text": 4}, inner="mcl")


def test_masked_batch_loss_is_finite_for_singleton_groups():
    """A group of one has only its positive: its row contributes -log 1 = 0, not NaN."""
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    loss = cross_modal_info_nce(a, b, 0.1, pseudo_labels=torch.tensor([0, 1, 2, 3]))
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
