"""Hook implementations of the FactorCL plugin (imports no torch)."""

from lightly_mm_plugins import hookimpl

LIGHTLY_MM_HOOKSPEC = "1.0"

PAPER = "Liang et al., Factorized Contrastive Learning, NeurIPS 2023"


@hookimpl
def register_objectives(register):
    register(
        "factorcl",
        "lightly_mm_factorcl.objective:FactorCLObjective",
        description="FactorCL-SSL: shared + unique heads, InfoNCE and NCE-CLUB bounds "
        "conditioned on augmentations",
        view="factorcl-multimodal",
        paper=PAPER,
    )
    register(
        "factorcl-sup",
        "lightly_mm_factorcl.objective:FactorCLSupObjective",
        description="FactorCL-SUP: shared + unique heads, InfoNCE and NCE-CLUB bounds "
        "conditioned on labels",
        view="factorcl-clean",
        paper=PAPER,
    )


@hookimpl
def register_views(register):
    register(
        "factorcl-multimodal",
        "lightly_mm_factorcl.views:FactorCLView",
        description="[clean, augmented] per modality (vectors: swap/noise/zero/identity, "
        "text: permute/replace/mask, images: torchvision v2); conditioned=True shares the draw",
    )
    register(
        "factorcl-clean",
        "lightly_mm_factorcl.views:FactorCLCleanView",
        description="one un-augmented observation per modality (FactorCL-SUP)",
    )
