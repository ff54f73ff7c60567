"""The fast entry-point reader returns what importlib.metadata returns.

Discovery reads ``entry_points.txt`` directly to avoid importing
:mod:`importlib.metadata` (~50 ms, see ``benchmarks/pipeline.py``); these tests
compare it with :mod:`importlib.metadata` on the real environment and on
hand-made ``sys.path`` layouts (shadowed copies, egg-info, comments, extras,
missing metadata), and check the fallback.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
import zipfile
from pathlib import Path

import pytest

from lightly_mm_plugins import entry_points as fast
from lightly_mm_plugins.hookspecs import ENTRY_POINT_GROUP


def _key(ep: object) -> tuple[str, str, str, str, str]:
    dist = getattr(ep, "dist", None)
    return (
        ep.name,  # type: ignore[attr-defined]
        ep.value,  # type: ignore[attr-defined]
        ep.group,  # type: ignore[attr-defined]
        dist.name if dist is not None else "",
        dist.version if dist is not None else "",
    )


def _reference(group: str) -> list[tuple[str, str, str, str, str]]:
    return sorted(_key(ep) for ep in md.entry_points(group=group))


def _fast(group: str) -> list[tuple[str, str, str, str, str]]:
    return sorted(_key(ep) for ep in fast.entry_points(group))


@pytest.mark.parametrize("group", [ENTRY_POINT_GROUP, "console_scripts", "pytest11"])
def test_matches_importlib_metadata_on_this_environment(group: str) -> None:
    assert _fast(group) == _reference(group)


def test_finds_the_shipped_plugins_without_importlib_metadata() -> None:
    names = {ep.name for ep in fast.entry_points(ENTRY_POINT_GROUP)}
    assert {"lightly-mm-clip", "lightly-mm-tcl"} <= names
    assert not fast._needs_fallback(sys.path)


def _dist(
    root: Path,
    dirname: str,
    entry_points: str | None,
    name: str | None = None,
    version: str | None = None,
    metadata_file: str = "METADATA",
) -> None:
    d = root / dirname
    d.mkdir(parents=True)
    if entry_points is not None:
        (d / "entry_points.txt").write_text(entry_points)
    header = "Metadata-Version: 2.1\n"
    if name is not None:
        header += f"Name: {name}\n"
    if version is not None:
        header += f"Version: {version}\n"
    (d / metadata_file).write_text(header + "\nName: not-a-header\nlong description\n")


def test_matches_importlib_metadata_on_made_up_layouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    group = "lmm_test_group"
    _dist(
        first,
        "Shadowed_Pkg-1.0.dist-info",
        f"[{group}]\nfrom-first = pkg_a.hooks\n",
        "Shadowed-Pkg",
        "1.0",
    )
    _dist(
        second,
        "shadowed.pkg-2.0.dist-info",
        f"[{group}]\nfrom-second = pkg_b.hooks\n",
        "shadowed.pkg",
        "2.0",
    )
    _dist(
        first,
        "multi-0.1.dist-info",
        f"# comment\n[console_scripts]\nx = y:z\n\n[{group}]\n# another comment\n"
        f"  a =  mod.sub:obj.attr [extra1, extra2]\nb=mod\n[other]\nc = d\n",
        "multi",
        "0.1",
    )
    _dist(
        first,
        "old_style.egg-info",
        f"[{group}]\negg = eggmod:thing\n",
        "old-style",
        "3.1",
        "PKG-INFO",
    )
    _dist(first, "no_entry_points-1.0.dist-info", None, "no-entry-points", "1.0")
    _dist(first, "other_group-1.0.dist-info", "[something_else]\nq = r\n", "other-group", "1.0")
    (first / "single_file.egg-info").write_text("Metadata-Version: 1.0\nName: single-file\n")
    monkeypatch.setattr(sys, "path", [str(first), str(tmp_path / "missing"), str(second)])
    got = _fast(group)
    assert got == _reference(group)
    assert [g[0] for g in got] == ["a", "b", "egg", "from-first"]  # the second copy is shadowed
    assert ("a", "mod.sub:obj.attr [extra1, extra2]", group, "multi", "0.1") in got


def test_load_resolves_module_and_attributes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lmm_ep_target.py").write_text(
        "class Outer:\n    class Inner:\n        value = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = fast.EntryPoint("x", "lmm_ep_target:Outer.Inner [extra]", "g")
    assert ep.load().value == 3
    module = fast.EntryPoint("y", "lmm_ep_target", "g").load()
    assert module.Outer.Inner.value == 3
    with pytest.raises(ValueError, match="malformed entry point value"):
        fast.EntryPoint("z", "not a value!", "g").load()


def test_zip_on_sys_path_falls_back_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
        zf.writestr("zipped-1.0.dist-info/entry_points.txt", "[lmm_zip_group]\nz = zmod\n")
    monkeypatch.setattr(sys, "path", [str(archive)])
    assert fast._needs_fallback(sys.path)
    got = fast.entry_points("lmm_zip_group")
    assert [(ep.name, ep.value, ep.dist.name) for ep in got] == [("z", "zmod", "zipped")]
    assert isinstance(got[0], md.EntryPoint)
