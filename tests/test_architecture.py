"""The layers of docs/architecture.md hold: dependencies point down, no two modules import each other, small modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "slidemap"

FORBIDDEN = {
    "data": {"mapping", "region", "evaluation", "training", "reporting", "cli", "ingest"},
    "ingest": {"mapping", "region", "evaluation", "training", "reporting", "cli"},
    "models": {"data", "ingest", "mapping", "region", "evaluation", "training", "reporting", "cli"},
    "mapping": {"region", "evaluation", "training", "reporting", "cli"},
    "region": {"evaluation", "training", "reporting", "cli"},
    "evaluation": {"training", "reporting", "cli"},
    "training": {"reporting", "cli"},
    "reporting": {"cli"},
}
"""Package -> the packages it must not import (docs/architecture.md, 'Layers')."""

DATA_ROOMS = {
    "sites": set(),
    "synthetic": set(),
    "tiling": {"sites"},
    "loading": {"sites", "tiling", "synthetic"},
    "patchsets": {"sites", "tiling", "loading"},
}
"""Room of ``data`` -> the other rooms it may import (docs/architecture.md, 'The data layer's rooms')."""


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every slidemap module ``path`` imports, at module level or inside functions."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("slidemap")}


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}
GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (SRC / parts[1]).is_dir()) else "<base>"


def room(module: str) -> str | None:
    """``sites`` for ``slidemap.data.sites.reader``; None outside ``data`` and for ``slidemap.data`` itself."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "data" else None


def test_the_checker_sees_the_real_imports() -> None:
    assert "slidemap.data.sites.reader" in GRAPH["slidemap.data.loading.datamodule"]
    assert "slidemap.mapping.rasters" in GRAPH["slidemap.training.outputs"]
    assert layer("slidemap.mapping.maps") == "mapping" and layer("slidemap.errors") == "<base>"
    assert "slidemap.data.tiling.patches" in GRAPH["slidemap.data.patchsets.stream"]
    assert room("slidemap.data.sites.reader") == "sites" and room("slidemap.data") is None


def test_every_data_module_lives_in_a_room() -> None:
    assert sorted(m for m in MODULES if layer(m) == "data" and m != "slidemap.data" and room(m) not in DATA_ROOMS) \
        == []


def test_data_rooms_import_only_the_rooms_below() -> None:
    """sites and synthetic at the bottom, then tiling, loading and patchsets: no two rooms import each other."""
    wrong = sorted(f"{a} -> {b}" for a, deps in GRAPH.items() if room(a) in DATA_ROOMS for b in deps
                   if room(b) != room(a) and room(b) in DATA_ROOMS and room(b) not in DATA_ROOMS[room(a)])
    assert wrong == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_down(package: str) -> None:
    wrong = sorted(f"{a} -> {b}" for a, deps in GRAPH.items() if layer(a) == package
                   for b in deps if layer(b) in FORBIDDEN[package])
    assert wrong == []


def test_no_two_modules_or_packages_import_each_other() -> None:
    pairs = sorted(f"{a} <-> {b}" for a, deps in GRAPH.items() for b in deps if a < b and a in GRAPH[b])
    assert pairs == []
    edges = {(layer(a), layer(b)) for a, deps in GRAPH.items() for b in deps if layer(a) != layer(b)}
    assert sorted(f"{a} <-> {b}" for a, b in edges if a < b and (b, a) in edges) == []


def test_no_private_names_cross_modules() -> None:
    crossing = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("slidemap"):
                crossing += [f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert crossing == []


def test_modules_stay_small() -> None:
    large = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 400}
    assert large == {}


def test_docstrings_cite_the_projects_own_documents() -> None:
    assert [name for name, path in MODULES.items() if "DESIGN section" in path.read_text()] == []


@pytest.mark.parametrize("config", ["train", "eval"])
def test_the_configs_and_the_library_defaults_agree(config: str, tmp_path: Path) -> None:
    """The paper's channels are listed once for users (conf/inputs/post.yaml) and once for library callers
    (``DEFAULT_CHANNELS``): the data config takes them from the inputs group, and the two lists are the same."""
    from conftest import compose_config

    from slidemap.data.sites.site import DEFAULT_CHANNELS
    from slidemap.data.tiling.split import WINDOWS

    cfg = compose_config(config, tmp_path, ["data.root=sites"])
    assert list(cfg.data.channels) == list(cfg.inputs.channels) == list(DEFAULT_CHANNELS)
    assert config == "eval" or cfg.window in WINDOWS
    for data in ("scenes", "landslide4sense"):
        other = compose_config(config, tmp_path, [f"data={data}", "data.root=sites", "inputs=change"])
        assert list(other.data.channels) == list(other.inputs.channels) != list(DEFAULT_CHANNELS)


def test_the_architecture_page_names_real_modules_and_functions() -> None:
    """docs/architecture.md's table names modules and their main functions: both must exist."""
    page = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    rows = [line.split("|")[2:4] for line in page.splitlines() if line.startswith("| ") and ".py`" in line]
    assert len(rows) >= 15
    for functions, modules in rows:
        paths = [SRC / m for m in re.findall(r"`([\w/]+\.py)`", modules)]
        assert paths and all(p.is_file() for p in paths), modules
        texts = " ".join(p.read_text() for p in paths)
        for name in re.findall(r"`(?:\w+\.)*(\w+)`", functions):
            assert re.search(rf"(def|class) {name}\b", texts), (name, modules)
