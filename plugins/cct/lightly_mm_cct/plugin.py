"""Hook implementations of ``lightly-mm-cct`` (imports no torch: factories are strings)."""

from lightly_mm_plugins import hookimpl

LIGHTLY_MM_HOOKSPEC = "1.0"

PAPER = (
    "Zheng, Chen, Yao, Yang, Tao, Zhou: Contrastive Attraction and Contrastive Repulsion "
    "for Representation Learning (CACR / Contrastive Conditional Transport), TMLR 2023, "
    "arXiv:2105.03746"
)


@hookimpl
def register_objectives(register):
    register(
        "cct",
        "lightly_mm_cct.objective:CCTObjective",
        description=(
            "CCT/CACR: positives and negatives re-weighted by their distance to the query "
            "(attraction + repulsion), cross- and intra-modal, optional MoCo queue"
        ),
        view="cct",
        paper=PAPER,
        code="https://github.com/JegZheng/CACR-SSL",
    )


@hookimpl
def register_views(register):
    register(
        "cct",
        "lightly_mm_cct.views:CCTView",
        description="K augmented image views (default 2, official 5) + one caption",
        paper=PAPER,
    )
