"""Hook implementations of the baseline plugin (imports no torch)."""

from lightly_mm_plugins import hookimpl

LIGHTLY_MM_HOOKSPEC = "1.0"


@hookimpl
def register_objectives(register):
    register(
        "clip",
        "lightly_mm_clip.objective:CLIPObjective",
        description="CLIP symmetric cross-modal InfoNCE (Radford et al. 2021), the baseline",
        view="clip",
    )


@hookimpl
def register_views(register):
    register(
        "clip",
        "lightly_mm_clip.views:CLIPView",
        description="one augmented observation per modality (one random caption)",
    )
