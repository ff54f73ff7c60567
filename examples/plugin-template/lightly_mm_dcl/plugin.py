"""Hooks: what this plugin registers. Keep this module free of torch imports."""

from lightly_mm_plugins import hookimpl

LIGHTLY_MM_HOOKSPEC = "1.0"


@hookimpl
def register_objectives(register):
    register(
        "dcl",
        "lightly_mm_dcl.objective:DCLObjective",
        description="decoupled cross-modal contrastive loss (Yeh et al. 2022)",
        view="dcl",
    )


@hookimpl
def register_views(register):
    register("dcl", "lightly_mm_dcl.objective:DCLView", description="one view per modality")
