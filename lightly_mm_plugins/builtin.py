"""Components the host itself provides: always loaded, cannot be disabled."""

from __future__ import annotations

from .hookspecs import hookimpl
from .registry import Register


@hookimpl
def register_heads(register: Register) -> None:
    register("linear", "lightly_mm_plugins.heads:linear_head", description="one Linear layer")
    register("mlp", "lightly_mm_plugins.heads:mlp_head", description="Linear-ReLU-Linear (SimCLR)")


@hookimpl
def register_stage_schedulers(register: Register) -> None:
    register(
        "single",
        "lightly_mm_plugins.stages:SingleStageScheduler",
        description="one stage: ordinary training",
    )


@hookimpl
def register_views(register: Register) -> None:
    register(
        "paired",
        "lightly_mm_plugins.views:ModalityView",
        description="k augmented observations per modality (views_per_modality=...)",
    )
