"""The learnable temperature (#18 item 6): gradient at the cap, clamp after the step."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lightly_mm_plugins.temperature import MAX_LOGIT_SCALE, LogitScale

CAP = math.log(MAX_LOGIT_SCALE)


def _pair(n: int = 8, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(n, d, generator=g, dtype=torch.float64),
        torch.randn(n, d, generator=g, dtype=torch.float64),
    )


def _open_clip_loss(a: torch.Tensor, b: torch.Tensor, log_scale: float) -> tuple[float, float]:
    """open_clip's ClipLoss with ``logit_scale = exp(param)``: value and d/d param."""
    open_clip_loss = pytest.importorskip("open_clip.loss")
    param = torch.tensor(log_scale, dtype=torch.float64, requires_grad=True)
    loss = open_clip_loss.ClipLoss()(F.normalize(a, dim=-1), F.normalize(b, dim=-1), param.exp())
    (grad,) = torch.autograd.grad(loss, param)
    return float(loss.detach()), float(grad)


def _losses() -> list[torch.nn.Module]:
    from lightly_mm_clip.loss import CLIPLoss
    from lightly_mm_mxmclr.loss import MXMCLRLoss

    return [
        CLIPLoss(learnable_temperature=True).double(),
        CLIPLoss(learnable_temperature=True, chunk_size=3).double(),
        MXMCLRLoss(learnable_temperature=True).double(),  # one fold: CLIP's loss
    ]


@pytest.mark.parametrize("offset", [0.0, 0.25])
@pytest.mark.parametrize("which", range(3))
def test_gradient_at_and_past_the_cap_equals_open_clip(which: int, offset: float) -> None:
    a, b = _pair()
    loss_fn = _losses()[which]
    with torch.no_grad():
        loss_fn.log_scale.fill_(CAP + offset)  # at the cap, and pushed past it by a step
    loss = loss_fn(a, b)
    (grad,) = torch.autograd.grad(loss, loss_fn.log_scale)
    want_loss, want_grad = _open_clip_loss(a, b, CAP + offset)
    assert float(loss) == pytest.approx(want_loss, rel=1e-10)
    assert float(grad) == pytest.approx(want_grad, rel=1e-8)
    assert float(grad) != 0.0  # a clamp inside forward made this exactly 0


def test_clamp_after_the_step_as_open_clip() -> None:
    from lightly_mm_clip.objective import CLIPObjective

    obj = CLIPObjective({"image": 4, "text": 4}, projection_dim=4)
    scale = obj.loss_fn.logit_scale
    with torch.no_grad():
        scale.log_scale.fill_(CAP + 1.0)
    obj.on_after_optimizer_step()
    assert float(scale.log_scale) == pytest.approx(CAP)
    assert obj.loss_fn.temperature == pytest.approx(1.0 / MAX_LOGIT_SCALE)
    with torch.no_grad():
        scale.log_scale.fill_(math.log(1 / 0.07))
    obj.on_after_optimizer_step()  # below the cap: untouched
    assert float(scale.log_scale) == pytest.approx(math.log(1 / 0.07))


def test_pipeline_clamps_after_every_step() -> None:
    from lightly_mm_plugins.training.module import MultimodalModule

    calls: list[int] = []
    fake = SimpleNamespace(
        objective=SimpleNamespace(on_after_optimizer_step=lambda: calls.append(1))
    )
    MultimodalModule.on_train_batch_end(fake, None, None, 0)  # type: ignore[arg-type]
    assert calls == [1]


@pytest.mark.parametrize("name", ["CLIPLoss", "MXMCLRLoss"])
def test_fixed_temperature_below_the_cap_is_an_error(name: str) -> None:
    import lightly_mm_clip
    import lightly_mm_mxmclr

    cls = getattr(lightly_mm_clip if name == "CLIPLoss" else lightly_mm_mxmclr, name)
    with pytest.raises(ValueError, match=r"temperature >= 0\.01"):
        cls(temperature=0.005)
    with pytest.raises(ValueError, match=r"temperature >= 0\.01"):
        cls(temperature=0.005, learnable_temperature=True)
    assert cls(temperature=0.01).temperature == pytest.approx(0.01)  # exactly at the cap


def test_fixed_scale_is_exact_and_not_checkpointed() -> None:
    scale = LogitScale(0.07)
    assert scale() == 1.0 / 0.07
    assert dict(scale.state_dict()) == {}
    assert float(scale.temperature_tensor(torch.zeros((), dtype=torch.float64))) == 0.07


def test_old_checkpoint_key_loads() -> None:
    from lightly_mm_clip.loss import CLIPLoss

    loss_fn = CLIPLoss(learnable_temperature=True)
    loss_fn.load_state_dict({"log_scale": torch.tensor(2.0)})
    assert float(loss_fn.log_scale) == 2.0
    CLIPLoss(temperature=0.1).load_state_dict({"log_scale": torch.tensor(2.3)})  # fixed: dropped
