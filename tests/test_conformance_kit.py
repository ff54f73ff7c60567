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


class IgnoresPseudoLabels(GoodObjective):
    """Declares pseudo_labels (so MCL would accept it) but never restricts its negatives."""

    requirements = Requirements(pseudo_labels=True)


class ClaimsTwoViews(GoodObjective):
    requirements = Requirements(min_views=2)


class HiddenHeads(Objective):
    """Keeps its projection heads in plain attributes: no joint embedding the pipeline finds."""

    def __init__(self, embedding_dims, modalities=("image", "text")):
        super().__init__(embedding_dims, modalities)
        self.image_head = nn.Linear(embedding_dims["image"], 8)
        self.text_head = nn.Linear(embedding_dims["text"], 8)

    def forward(self, batch):
        self.validate_batch(batch)
        loss = cross_modal_info_nce(
            self.image_head(batch.view("image")), self.text_head(batch.view("text"))
        )
        return ObjectiveOutput(loss)


class OwnJointEmbedding(HiddenHeads):
    def joint_embedding(self, modality, embedding):
        return (self.image_head if modality == "image" else self.text_head)(embedding)


class NoJointSpace(HiddenHeads):
    joint_space = False


@pytest.mark.parametrize(
    ("objective", "broken"),
    [
        (IgnoresPseudoLabels, "declares pseudo_labels .* but ignores them"),
        (ClaimsTwoViews, "never uses the second view"),
        (HiddenHeads, "no joint embedding for modality 'image'.*joint_space = False"),
    ],
)
def test_declared_but_ignored_and_hidden_joint_space_are_caught(objective, broken):
    with pytest.raises(AssertionError, match=broken):
        assert_plugin_conforms("kit-test", host_with(objective))


@pytest.mark.parametrize("objective", [OwnJointEmbedding, NoJointSpace])
def test_an_explicit_joint_embedding_or_none_passes(objective):
    assert_plugin_conforms("kit-test", host_with(objective))


def test_the_pipeline_refuses_an_objective_without_a_joint_embedding(tmp_path):
    from lightly_mm_plugins import reset_host
    from lightly_mm_plugins.errors import LightlyMMError
    from lightly_mm_plugins.training import TrainConfig, train

    host = host_with(HiddenHeads)
    import lightly_mm_clip.plugin as clip_plugin  # the view "clip" the run needs

    host.register_plugin(clip_plugin, name="lightly-mm-clip")
    reset_host(host)
    try:
        cfg = TrainConfig(
            method="obj",
            view="clip",
            epochs=1,
            batch_size=8,
            limit_train_samples=8,
            out=str(tmp_path),
            quiet=True,
        )
        with pytest.raises(LightlyMMError, match="no joint embedding"):
            train(cfg)
    finally:
        reset_host()
