"""Hook implementations of ``lightly-mm-tcl`` (imports no torch: factories are strings)."""

from lightly_mm_plugins import hookimpl

LIGHTLY_MM_HOOKSPEC = "1.0"

PAPER = "Yang et al., Vision-Language Pre-Training with Triple Contrastive Learning, CVPR 2022"


@hookimpl
def register_objectives(register):
    register(
        "tcl",
        "lightly_mm_tcl.objective:TCLObjective",
        description=(
            "TCL: cross-modal alignment + intra-modal contrast + local MI, "
            "momentum heads and queues (Yang et al. 2022)"
        ),
        view="tcl",
        paper=PAPER,
        code="https://github.com/uta-smile/TCL",
    )


@hookimpl
def register_views(register):
    register(
        "tcl",
        "lightly_mm_tcl.views:TCLView",
        description="two TCL-augmented image views (online, momentum) + one caption",
        paper=PAPER,
    )
