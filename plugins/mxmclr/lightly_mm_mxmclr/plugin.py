"""Hook implementations of ``lightly-mm-mxmclr`` (imports no torch: factories are strings)."""

from lightly_mm_plugins import hookimpl

LIGHTLY_MM_HOOKSPEC = "1.0"

PAPER = (
    "Wang, Jiang, Zou, Ma, MXM-CLR: A Unified Framework for Contrastive Learning of "
    "Multifold Cross-Modal Representations, arXiv 2303.10839 (2023)"
)


@hookimpl
def register_objectives(register):
    register(
        "mxm-clr",
        "lightly_mm_mxmclr.objective:MXMCLRObjective",
        description=(
            "MXM-CLR: every observation pair of an instance is a positive; hybrid hard "
            "(multi-positive) + soft (similarity-weighted) cross-entropy (Wang et al. 2023)"
        ),
        view="multifold",
        paper=PAPER,
        code="https://github.com/JLU-ICL/MXM-CLR (README only)",
    )


@hookimpl
def register_views(register):
    register(
        "multifold",
        "lightly_mm_mxmclr.views:MultifoldView",
        description="K observations per modality and instance (default: 1 image, all captions)",
        paper=PAPER,
    )
