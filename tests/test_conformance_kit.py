"""The conformance kit catches each broken promise and names it."""

from __future__ import annotations

import os

import pytest
from torch import nn

from lightly_mm_plugins import PluginHost, hookimpl
from lightly_mm_plugins.api import Objective, ObjectiveOutput, Requirements, SingleStageScheduler
from lightly_mm_plugins.losses import cross_modal_info_nce
from lightly_mm_plugins.testing import assert_plugin_conforms, check_plugin
from lightly_mm_plugins.views import ModalityView


class GoodObjective(Objective):
    def __init__(self, embedding_dims, modalities=("image", "text")):
        super().__init__(embedding_dims, modalities)
        self.heads = nn.ModuleDict({m: nn.Linear(embedding_dims[m], 8) for m in self.modalities})

    def forward(self, batch):
        self.validate_batch(batch)
        a, b = self.modalities
        loss = cross_modal_info_nce(self.heads[a](batch.view(a)), self.heads[b](batch.view(b)))
        return ObjectiveOutput(loss, {"n": loss.new_tensor(float(batch.batch_size))})


class UnusedParameter(GoodObjective):
    def __init__(self, embedding_dims, modalities=("image", "text")):
        super().__init__(embedding_dims, modalities)
        self.forgotten = nn.Linear(3, 3)


class Noisy(GoodObjective):
    def forward(self, batch):
        out = super().forward(batch)
        noise = int.from_bytes(os.urandom(2), "little") / 65536
        return ObjectiveOutput(out.loss + noise, out.logs)


class ClaimsMomentum(GoodObjective):
    requirements = Requirements(momentum=True)


class LyingView(ModalityView):
    def __init__(self, modalities, image_size=32, **kw):
        super().__init__(modalities, views_per_modality={"image": 3}, image_size=image_size)

    def __call__(self, sample):
        out = super().__call__(sample)
        out.observations["image"] = out.observations["image"][:2]
        return out


def host_with(objective_cls, view_cls=ModalityView) -> PluginHost:
    class Plugin:
        @hookimpl
        def register_objectives(self, register):
            register("obj", objective_cls)

        @hookimpl
        def register_views(self, register):
            register("view", view_cls)

        @hookimpl
        def register_stage_schedulers(self, register):
            register("sched", SingleStageScheduler)

    host = PluginHost(autoload=False, strict=True)
    host.register_plugin(Plugin(), name="kit-test", distribution="kit-test")
    return host


def test_good_plugin_passes():
    results = assert_plugin_conforms("kit-test", host_with(GoodObjective))
    checks = {r.check for r in results}
    assert "gradients reach every trainable parameter" in checks
    assert "consistent stages" in checks


@pytest.mark.parametrize(
    ("objective", "view", "broken"),
    [
        (UnusedParameter, ModalityView, "forgotten"),
        (Noisy, ModalityView, "two seeded runs differ"),
        (ClaimsMomentum, ModalityView, "never uses momentum"),
        (GoodObjective, LyingView, "declares 3 observations"),
    ],
)
def test_broken_promises_are_named(objective, view, broken):
    with pytest.raises(AssertionError, match=broken):
        assert_plugin_conforms("kit-test", host_with(objective, view))


def test_unknown_plugin_is_reported():
    results = check_plugin("not-installed", PluginHost(autoload=False))
    assert not results[0].ok and "no such plugin" in results[0].message
