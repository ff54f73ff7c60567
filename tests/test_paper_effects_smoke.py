"""Smoke tests of the paper-effect experiments (tiny sizes, a few seconds in all).

``benchmarks/paper_effects.py`` (MCL / CCT / TCL loops and the results page) and
``plugins/factorcl/experiments/upstream_protocol.py`` (FactorCL at the official
synthetic protocol) must keep running end to end, resume from their JSON lines and
fill every table of the page; the numbers themselves are not asserted.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def effects() -> ModuleType:
    return _load("paper_effects", ROOT / "benchmarks" / "paper_effects.py")


@pytest.fixture(scope="module")
def upstream_protocol() -> ModuleType:
    path = ROOT / "plugins" / "factorcl" / "experiments" / "upstream_protocol.py"
    return _load("factorcl_upstream_protocol", path)


TINY = ["--seeds", "0", "--steps", "2", "--train", "64", "--test", "32", "--queue", "16"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tcl_and_cct_grids_run_and_resume(effects: ModuleType, tmp_path: Path) -> None:
    tcl, cct = tmp_path / "tcl.jsonl", tmp_path / "cct.jsonl"
    effects.main(["tcl", *TINY, "--batch", "8", "--mismatch", "0,0.5", "--out", str(tcl)])
    effects.main(["cct", *TINY, "--batches", "4,8", "--out", str(cct)])
    rows = _rows(tcl)
    assert {(r["job"]["method"], r["job"]["mismatch"]) for r in rows} == {
        (m, f) for m in ("clip", "tcl-cma", "tcl") for f in (0.0, 0.5)
    }
    assert all(0.0 <= r["i2t_r1"] <= 1.0 and 0.0 <= r["probe_image"] <= 1.0 for r in rows)
    assert len(_rows(cct)) == 6
    effects.main(["cct", *TINY, "--batches", "4,8", "--out", str(cct)])  # resumes: nothing new
    assert len(_rows(cct)) == 6


def test_mismatch_replaces_exactly_that_fraction_of_captions(effects: ModuleType) -> None:
    clean = effects.PairedSets(200, seed=3)
    noisy = effects.PairedSets(200, seed=3)
    noisy.mismatch(0.4, seed=0)
    changed = (clean.x["text"] != noisy.x["text"]).flatten(1).any(1)
    assert 70 <= int(changed.sum()) <= 80  # 80 drawn; a few may map onto themselves
    assert torch.equal(clean.x["image"], noisy.x["image"])


def test_tcl_terms_change_training(effects: ModuleType) -> None:
    args = effects.argparse.Namespace(
        train=64, test=32, hidden=16, dim=8, lr=1e-2, queue=16, steps=3
    )
    job = {"batch": 8, "mismatch": 0.0, "seed": 0}
    full = effects.fit_paired({**job, "method": "tcl"}, args)[0]
    cma = effects.fit_paired({**job, "method": "tcl-cma"}, args)[0]
    # same seed, data and init: only the intra-modal + local terms differ
    assert not torch.allclose(full["image"].net[0].weight, cma["image"].net[0].weight)
    # the diagnostic with fresh observation noise per image view trains differently too
    fresh = effects.fit_paired({**job, "method": "tcl", "view_noise": "fresh"}, args)[0]
    assert not torch.allclose(full["image"].net[0].weight, fresh["image"].net[0].weight)


def test_mcl_rows_run(effects: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "mcl.jsonl"
    effects.main(
        [
            *("mcl", "--seeds", "0", "--variants", "capacity:1", "--rows", "single,mask"),
            *("--train", "400", "--test", "100", "--out", str(out)),
        ]
    )
    rows = _rows(out)
    assert [r["job"]["row"] for r in rows] == ["single", "mask"]
    assert all(0.0 <= r["hard"] <= 1.0 for r in rows)


def test_factorcl_protocol_runs_the_project_objectives(
    upstream_protocol: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "fcl.jsonl"
    upstream_protocol.main(
        [
            *("--n", "160", "--batch-size", "32", "--epochs", "1", "--simclr-epochs", "1"),
            *("--critic-hidden", "16", "--seeds", "0", "--out", str(out)),
        ]
    )
    methods = [r["method"] for r in _rows(out)]
    # no --upstream: the official-code rows are skipped, never faked
    assert methods == ["random-init", "raw", "proj-sup", "proj-ssl", "proj-clip"]
    assert all(0.0 <= r["acc"] <= 1.0 for r in _rows(out))


def test_report_fills_every_table_and_marks_missing_seeds(
    effects: ModuleType, tmp_path: Path
) -> None:
    res = tmp_path / "results"
    res.mkdir()
    (res / "factorcl.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "method": m,
                    "seed": s,
                    "acc": 0.9 + s / 100,
                    "seconds": 1.0,
                    "n": 10,
                    "batch_size": 2,
                    "epochs": 1,
                    "simclr_epochs": 1,
                    "lr": 1e-4,
                }
            )
            + "\n"
            for m in ("raw", "random-init", "proj-ssl", "up-ssl")
            for s in ((0, 1, 2) if m != "up-ssl" else (0,))
        )
    )
    (res / "mcl.jsonl").write_text(
        json.dumps(
            {
                "job": {"variant": "capacity", "epochs": 1, "row": "mask", "seed": 0},
                "easy": 0.9,
                "hard": 0.5,
                "raw_easy": 1.0,
                "raw_hard": 0.9,
            }
        )
        + "\n"
    )
    for name, col in (("cct", "batch"), ("tcl", "mismatch")):
        (res / f"{name}.jsonl").write_text(
            json.dumps(
                {"job": {"method": "clip", col: 0.2, "seed": 0}, "i2t_r1": 0.1, "probe_image": 0.5}
            )
            + "\n"
        )
    page = tmp_path / "page.md"
    page.write_text(
        "".join(
            f"# {n}\n<!-- table:{n} -->\nold\n<!-- /table:{n} -->\n"
            for n in ("factorcl", "mcl", "cct", "tcl")
        )
    )
    effects.main(
        ["report", "--results", str(res), "--page", str(page), "--plot", str(tmp_path / "p.png")]
    )
    text = page.read_text()
    assert "old" not in text
    assert "0.910 ± 0.010" in text  # proj-ssl, 3 seeds
    assert "(1/3 seeds)" in text  # up-ssl: only seed 0 done
    assert "20 % mismatched" in text and "batch 0.2" in text
    assert (tmp_path / "p.png").stat().st_size > 0
