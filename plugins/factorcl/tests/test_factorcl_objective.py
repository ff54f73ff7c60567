"""Tests of the FactorCL objectives (SSL and SUP) and their registration."""

from __future__ import annotations

import pytest
import torch
from lightly_mm_factorcl.objective import FactorCLObjective, FactorCLSupObjective

from lightly_mm_plugins.api import EncodedBatch

torch.set_num_threads(1)

DIMS = {"x1": 12, "x2": 10}
SMALL = {"critic_hidden_dim": 32, "projection_dim": 6}


def _ssl(**kw: object) -> FactorCLObjective:
    torch.manual_seed(0)
    return FactorCLObjective(DIMS, modalities=("x1", "x2"), **{**SMALL, **kw})


def _sup(**kw: object) -> FactorCLSupObjective:
    torch.manual_seed(0)
    return FactorCLSupObjective(DIMS, modalities=("x1", "x2"), num_classes=3, **{**SMALL, **kw})


def _ssl_batch(n: int = 8, requires_grad: bool = False) -> EncodedBatch:
    gen = torch.Generator().manual_seed(1)
    return EncodedBatch.from_tensors(
        {
            "x1": torch.randn(n, 2, 12, generator=gen).requires_grad_(requires_grad),
            "x2": torch.randn(n, 2, 10, generator=gen).requires_grad_(requires_grad),
        }
    )


def _sup_batch(n: int = 9) -> EncodedBatch:
    gen = torch.Generator().manual_seed(2)
    return EncodedBatch.from_tensors(
        {"x1": torch.randn(n, 12, generator=gen), "x2": torch.randn(n, 10, generator=gen)},
        labels=torch.arange(n) % 3,
    )


# ------------------------------------------------------------ forward/backward
@pytest.mark.parametrize("make,batch", [(_ssl, _ssl_batch), (_sup, _sup_batch)])
def test_forward_backward_finite_and_loss_is_sum_of_terms(make, batch) -> None:
    obj = make()
    b = batch()
    out = obj(b)
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert set(out.logs) == {"nce_x1x2", "club_x1x2", "nce_x1y", "nce_x2y", "nce_cond", "club_cond"}
    torch.testing.assert_close(out.loss.detach(), torch.stack(list(out.logs.values())).sum())
    out.loss.backward()
    main = {id(p) for p in obj.auxiliary_parameters()}
    for name, p in obj.named_parameters():
        if id(p) in main:
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_ssl_terms_follow_the_multibench_convention() -> None:
    """Each term recomputed from its own heads and critics, as papers.md lists it."""
    obj = _ssl()
    b = _ssl_batch()
    x1, x1a = b.view("x1", 0), b.view("x1", 1)
    x2, x2a = b.view("x2", 0), b.view("x2", 1)
    h = obj.heads
    terms = obj.terms(b)
    expected = {
        "nce_x1x2": obj.critics["nce_x1x2"](h["nce_x1x2"][0](x1), h["nce_x1x2"][1](x2)),
        "club_x1x2": obj.club["club_x1x2"](h["club_x1x2"][0](x1), h["club_x1x2"][1](x2)),
        "nce_x1y": obj.critics["nce_x1y"](h["nce_xy"][0](x1), h["nce_xy"][0](x1a)),
        "nce_x2y": obj.critics["nce_x2y"](h["nce_xy"][1](x2), h["nce_xy"][1](x2a)),
        "nce_cond": obj.critics["nce_cond"](
            torch.cat([h["nce_cond"][0](x1), h["nce_cond"][0](x1a)], 1),
            torch.cat([h["nce_cond"][1](x2), h["nce_cond"][1](x2a)], 1),
        ),
        "club_cond": obj.club["club_cond"](
            torch.cat([h["club_cond"][0](x1), h["club_cond"][0](x1a)], 1),
            torch.cat([h["club_cond"][1](x2), h["club_cond"][1](x2a)], 1),
        ),
    }
    for key, value in expected.items():
        torch.testing.assert_close(terms[key], value, msg=key)
    # the synthetic_model quirk: the conditional CLUB ignores the augmented view
    quirk = _ssl(club_cond_on_augmentation=False)
    g = quirk.heads["club_cond"]
    torch.testing.assert_close(
        quirk.terms(b)["club_cond"],
        quirk.club["club_cond"](
            torch.cat([g[0](x1), g[0](x1)], 1), torch.cat([g[1](x2), g[1](x2)], 1)
        ),
    )


def test_sup_terms_use_raw_label_and_onehot_conditioning() -> None:
    obj = _sup()
    b = _sup_batch()
    x1, x2 = b.view("x1"), b.view("x2")
    h = obj.heads
    y = b.labels.float().reshape(-1, 1)
    onehot = torch.nn.functional.one_hot(b.labels, 3).float()
    terms = obj.terms(b)
    torch.testing.assert_close(terms["nce_x1y"], obj.critics["nce_x1y"](h["nce_xy"][0](x1), y))
    torch.testing.assert_close(
        terms["club_cond"],
        obj.club["club_cond"](
            torch.cat([h["club_cond"][0](x1), onehot], 1),
            torch.cat([h["club_cond"][1](x2), onehot], 1),
        ),
    )
    one_side = _sup(condition_both=False)
    assert one_side.critics["nce_cond"].critic.first_dim == 6 + 3
    assert one_side.critics["nce_cond"].critic.second_dim == 6
    assert torch.isfinite(one_side(b).loss)
    onehot_input = _sup(label_input="onehot")
    assert onehot_input.critics["nce_x1y"].critic.second_dim == 3
    assert torch.isfinite(onehot_input(b).loss)


# ---------------------------------------------------------------- auxiliary
@pytest.mark.parametrize("make,batch", [(_ssl, _ssl_batch), (_sup, _sup_batch)])
def test_auxiliary_loss_only_touches_club_critics(make, batch) -> None:
    obj = make()
    b = batch()
    aux_ids = {id(p) for p in obj.auxiliary_parameters()}
    assert aux_ids == {id(p) for p in obj.club.parameters()}
    assert len(aux_ids) == 12  # two critics x three Linear layers x (weight, bias)
    loss = obj.auxiliary_loss(b)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in obj.named_parameters():
        if id(p) in aux_ids:
            assert p.grad is not None, name
        else:  # heads run without gradient in the auxiliary step
            assert p.grad is None, name
        if id(p) in aux_ids and not name.endswith("output.bias"):
            assert p.grad.abs().sum() > 0, name
    # InfoNCE is invariant to a constant shift of the critic: output-bias gradient 0
    for bound in obj.club.values():
        assert bound.critic.output.bias.grad.abs().max() < 1e-6


def test_auxiliary_loss_is_the_club_learning_losses() -> None:
    obj = _ssl()
    b = _ssl_batch()
    h = obj.heads
    x1, x1a, x2, x2a = b.view("x1", 0), b.view("x1", 1), b.view("x2", 0), b.view("x2", 1)
    expected = obj.club["club_x1x2"].learning_loss(
        h["club_x1x2"][0](x1), h["club_x1x2"][1](x2)
    ) + obj.club["club_cond"].learning_loss(
        torch.cat([h["club_cond"][0](x1), h["club_cond"][0](x1a)], 1),
        torch.cat([h["club_cond"][1](x2), h["club_cond"][1](x2a)], 1),
    )
    torch.testing.assert_close(obj.auxiliary_loss(b), expected.detach())


def test_auxiliary_settings_and_requirements() -> None:
    obj = _ssl(auxiliary_steps=3, auxiliary_lr=5e-4)
    assert (obj.auxiliary_steps, obj.auxiliary_lr) == (3, 5e-4)
    assert (_ssl().auxiliary_steps, _ssl().auxiliary_lr) == (1, 1e-4)
    assert obj.requirements.min_views == 2 and not obj.requirements.labels
    assert not obj.requirements.pseudo_labels
    sup = _sup()
    assert sup.requirements.labels and sup.requirements.min_views == 1
    with pytest.raises(ValueError, match="auxiliary_steps"):
        _ssl(auxiliary_steps=0)


def test_training_steps_decrease_the_loss_and_club_critic_learns() -> None:
    """A few alternating main/auxiliary steps on fixed correlated embeddings."""
    torch.manual_seed(0)
    obj = FactorCLObjective(DIMS, modalities=("x1", "x2"), critic_hidden_dim=32, projection_dim=8)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(32, 6, generator=gen)
    x1 = torch.cat([z, torch.randn(32, 6, generator=gen)], 1)
    x2 = torch.cat([z[:, :4], torch.randn(32, 6, generator=gen)], 1)
    aug = [x + 0.05 * torch.randn(x.shape, generator=gen) for x in (x1, x2)]
    b = EncodedBatch.from_tensors(
        {"x1": torch.stack([x1, aug[0]], 1), "x2": torch.stack([x2, aug[1]], 1)}
    )
    aux_ids = {id(p) for p in obj.auxiliary_parameters()}
    main_opt = torch.optim.Adam([p for p in obj.parameters() if id(p) not in aux_ids], lr=3e-3)
    aux_opt = torch.optim.Adam(obj.auxiliary_parameters(), lr=3e-3)
    first = obj(b).loss.item()
    first_aux = obj.auxiliary_loss(b).item()
    for _ in range(40):
        main_opt.zero_grad()
        obj(b).loss.backward()
        main_opt.step()
        aux_opt.zero_grad()
        obj.auxiliary_loss(b).backward()
        aux_opt.step()
    out = obj(b)
    assert out.loss.item() < first - 2.0
    assert out.logs["nce_x1x2"].item() < -0.3  # shared information found
    assert obj.auxiliary_loss(b).item() < first_aux


# ---------------------------------------------------------- representation
def test_representation_concatenates_shared_and_unique() -> None:
    obj = _ssl()
    e = torch.randn(5, 12)
    parts = obj.factorized("x1", e)
    assert parts["shared"].shape == (5, 12) and parts["unique"].shape == (5, 18)
    torch.testing.assert_close(
        parts["shared"], torch.cat([obj.heads["nce_x1x2"][0](e), obj.heads["club_cond"][0](e)], 1)
    )
    rep = obj.representation("x1", e)
    torch.testing.assert_close(rep, torch.cat([parts["shared"], parts["unique"]], 1))
    assert obj.representation("x2", torch.randn(5, 10)).shape == (5, 30)
    other = torch.randn(5, 7)
    assert obj.representation("audio", other) is other
    with pytest.raises(ValueError, match="not one of"):
        obj.factorized("audio", other)


def test_projection_dim_defaults_to_encoder_size_and_head_layers() -> None:
    obj = FactorCLObjective(DIMS, modalities=("x1", "x2"), critic_hidden_dim=8)
    assert obj.projection_dims == [12, 10]
    linears = [m for m in obj.heads["nce_x1x2"][0].modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 12), (12, 12)]
    deep = FactorCLObjective(DIMS, modalities=("x1", "x2"), critic_hidden_dim=8, head_layers=3)
    assert sum(isinstance(m, torch.nn.Linear) for m in deep.heads["nce_xy"][1].modules()) == 3
    # official critic: Linear(d, 512), ReLU, Linear(512, 512), ReLU, Linear(512, 1)
    full = FactorCLObjective({"a": 4, "b": 4}, modalities=("a", "b"))
    critic = full.critics["nce_cond"].critic
    assert critic.input.weight.shape == (512, 16) and len(critic.hidden) == 1


# ----------------------------------------------------------------- bad input
def test_bad_batches_raise_value_errors() -> None:
    obj = _ssl()
    one_view = EncodedBatch.from_tensors({"x1": torch.randn(4, 12), "x2": torch.randn(4, 10)})
    with pytest.raises(ValueError, match="needs 2 views"):
        obj(one_view)
    padded = _ssl_batch()
    padded.masks["x2"][0, 1] = False
    with pytest.raises(ValueError, match="clean \\+ augmented"):
        obj(padded)
    sup = _sup()
    no_labels = EncodedBatch.from_tensors({"x1": torch.randn(4, 12), "x2": torch.randn(4, 10)})
    with pytest.raises(ValueError, match="needs labels"):
        sup(no_labels)
    big = _sup_batch()
    big.labels[0] = 3
    with pytest.raises(ValueError, match="num_classes"):
        sup(big)


# ------------------------------------------------------------- registration
def test_registered_with_the_host() -> None:
    import lightly_mm_plugins as lmm

    assert {"factorcl", "factorcl-sup"} <= set(lmm.list_names("objectives"))
    assert {"factorcl-multimodal", "factorcl-clean"} <= set(lmm.list_names("views"))
    obj = lmm.create_objective(
        "factorcl", embedding_dims=DIMS, modalities=("x1", "x2"), critic_hidden_dim=8
    )
    assert isinstance(obj, FactorCLObjective)
    sup = lmm.create_objective(
        "factorcl-sup", embedding_dims=DIMS, modalities=("x1", "x2"), critic_hidden_dim=8
    )
    assert isinstance(sup, FactorCLSupObjective) and sup.num_classes == 20
