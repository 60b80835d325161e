"""The `slidemap` command: JSON outputs as documented; bad input is one line `slidemap CMD: error: PATH: PROBLEM`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fake_sites as fs
from slidemap.cli import main, scenarios_for

WINDOWS = ("32", "64", "128")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Two default fake sites (16 x 20 px, the 5 x 5 px landslide square, one far polygon that does not count)."""
    root = tmp_path_factory.mktemp("cli") / "sites"
    fs.make_site(root / "a")
    fs.make_site(root / "b")
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(capsys, command: str, *argv: str) -> str:
    """Run a failing command; check exit status 2, nothing on stdout, one line on stderr; return that line."""
    code, out, err = run(capsys, command, *argv)
    assert code == 2 and out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    prefix = f"slidemap {command}: error: "
    assert err.startswith(prefix), err
    return err[len(prefix):-1]


# ---------------------------------------------------------------- describe


def test_describe_json_on_fake_sites(capsys, root):
    code, out, _ = run(capsys, "describe", str(root), "--json")
    assert code == 0
    desc = json.loads(out)
    assert set(desc) == {"sites", "totals"} and list(desc["sites"]) == ["a", "b"]
    a = desc["sites"]["a"]
    # 16 x 20 px of 10 m: 0.16 x 0.2 km, 320 px = 0.032 km2. One landslide of 5 x 5 px = 25 px = 2500 m2.
    assert a["crs"] == "EPSG:32651" and a["pixel_size_m"] == 10.0 and a["shape"] == [16, 20]
    assert a["extent_km"] == pytest.approx([0.16, 0.2])
    assert a["area_km2"] == pytest.approx(0.032)
    assert a["valid_fraction"] == 1.0
    assert a["landslide_count"] == 1
    assert a["landslide_fraction"] == pytest.approx(25 / 320)
    assert a["landslide_area_km2"] == pytest.approx(0.0025)
    assert a["mean_landslide_px"] == pytest.approx(25.0) and a["mean_landslide_m2"] == pytest.approx(2500.0)
    # Along columns: test 0.4 * 20 = 8, val min(32, 12 // 2) = 6, train 6; one (padded) window each at every size.
    assert a["split_axis"] == "cols"
    assert a["blocks"] == {"train": [16, 6], "val": [16, 6], "test": [16, 8]}
    assert a["patches"] == {w: {"train": 1, "val": 1, "test": 1} for w in WINDOWS}
    assert desc["totals"] == {"patches": {w: 6 for w in WINDOWS}}


def test_describe_only_the_named_sites(capsys, root):
    code, out, _ = run(capsys, "describe", str(root), "--sites", "b", "--json")
    desc = json.loads(out)
    assert code == 0 and list(desc["sites"]) == ["b"]
    assert desc["totals"]["patches"] == {w: 3 for w in WINDOWS}


def test_describe_text_table(capsys, root):
    code, out, _ = run(capsys, "describe", str(root))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("site") and len(lines) == 6  # header, 2 sites, 2 sensor lines, totals
    assert lines[3] == "a: Sentinel-2 (s2.tif), bands blue, green, red, nir in reflectance, 10 m pixels"
    assert lines[1].split()[:2] == ["a", "EPSG:32651"]
    assert "1/1/1 | 1/1/1 | 1/1/1" in lines[1]
    assert lines[-1].startswith("total patches: 32px: 6, 64px: 6, 128px: 6")


# ---------------------------------------------------------------- synth and baseline


def test_synth_writes_the_three_sites(capsys, tmp_path):
    out_dir = tmp_path / "synthetic"
    code, out, _ = run(capsys, "synth", "--out", str(out_dir), "--scale", "0.02", "--seed", "5")
    assert code == 0 and out.strip() == str(out_dir)
    stamp = json.loads((out_dir / "synthetic.json").read_text())
    assert (stamp["seed"], stamp["scale"]) == (5, 0.02)
    for name in ("taiwan", "china", "japan"):
        assert {p.name for p in (out_dir / name).iterdir()} == {"s2.tif", "s2_pre.tif", "dem.tif",
                                                                 "inventory.geojson", "site.yaml", "s2.qml",
                                                                 "s2_pre.qml"}


def test_scenarios_are_all_plus_one_per_site():
    assert scenarios_for(["taiwan", "china", "japan"]) == {
        "all": ["taiwan", "china", "japan"], "taiwan": ["taiwan"], "china": ["china"], "japan": ["japan"]}


def test_baseline_json_shape(capsys, synthetic_root):
    code, out, _ = run(capsys, "baseline", str(synthetic_root), "--json")
    assert code == 0
    result = json.loads(out)
    sites = ["china", "japan", "taiwan"]  # read in sorted folder order
    assert set(result) == {"scenarios", "thresholds"}
    assert list(result["scenarios"]) == ["all", *sites]
    for scenario, per_area in result["scenarios"].items():
        assert list(per_area) == [*sites, "all"]
        for m in per_area.values():
            assert {"precision", "recall", "f1"} <= set(m)
            tp, fp, fn = m["tp"], m["fp"], m["fn"]
            assert m["precision"] == pytest.approx(tp / (tp + fp))
            assert m["recall"] == pytest.approx(tp / (tp + fn))
            assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        for k in ("tp", "fp", "fn", "tn"):
            assert per_area["all"][k] == sum(per_area[s][k] for s in sites)
        t = result["thresholds"][scenario]
        assert set(t) == {"ndvi_max", "slope_min"} and -0.2 <= t["ndvi_max"] <= 0.9 and 0 <= t["slope_min"] <= 70


def test_baseline_text_table(capsys, synthetic_root):
    code, out, _ = run(capsys, "baseline", str(synthetic_root), "--sites", "china", "taiwan")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 1 + 3  # header, then scenarios all, china, taiwan
    assert [line.split()[0] for line in lines[1:]] == ["all", "china", "taiwan"]


# ---------------------------------------------------------------- bad input: one line, exit status 2


@pytest.mark.parametrize("command", ["describe", "baseline"])
def test_missing_folder(capsys, tmp_path, command):
    assert one_error_line(capsys, command, str(tmp_path / "nope")) == f"{tmp_path / 'nope'}: sites folder not found"


def test_folder_without_sites(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes").mkdir()
    assert (one_error_line(capsys, "describe", str(tmp_path / "empty"))
            == f"{tmp_path / 'empty'}: no sites: no subfolder holds an s2.tif or image.tif")


@pytest.mark.parametrize("command", ["describe", "baseline"])
def test_unknown_site_lists_the_known_ones(capsys, root, command):
    line = one_error_line(capsys, command, str(root), "--sites", "a", "atlantis")
    assert line == f"{root}: unknown site 'atlantis'; known sites: a, b"


def test_empty_inventory(capsys, tmp_path):
    fs.make_site(tmp_path / "a")
    folder = fs.make_site(tmp_path / "b")
    (folder / "inventory.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    line = one_error_line(capsys, "baseline", str(tmp_path))
    assert line == f"{folder / 'inventory.geojson'}: empty inventory: no features"


def test_site_without_labels(capsys, tmp_path):
    folder = fs.make_site(tmp_path / "a", labels=None)
    line = one_error_line(capsys, "describe", str(tmp_path))
    assert line == f"{folder}: no inventory.* or mask.tif: the site has no landslide labels"


def test_malformed_site_yaml(capsys, tmp_path):
    folder = fs.make_site(tmp_path / "a")
    (folder / "site.yaml").write_text("split: [rows\n")
    line = one_error_line(capsys, "describe", str(tmp_path))
    assert line.startswith(f"{folder / 'site.yaml'}: malformed YAML")


def test_bad_split_option_names_the_real_file(capsys, tmp_path):
    folder = fs.make_site(tmp_path / "a")
    fs.write_yaml(folder, {"split": {"axis": "diagonal"}})
    line = one_error_line(capsys, "describe", str(tmp_path))
    assert line.startswith(f"{folder / 'site.yaml'}: ")
    assert line.endswith("site.yaml: split axis must be auto, rows or cols, got 'diagonal'")


def test_non_numeric_split_fraction(capsys, tmp_path):
    folder = fs.make_site(tmp_path / "a")
    fs.write_yaml(folder, {"split": {"test_fraction": "40%"}})
    line = one_error_line(capsys, "describe", str(tmp_path))
    assert "test_fraction" in line


@pytest.mark.parametrize("scale", ["0", "-1"])
def test_synth_rejects_a_non_positive_scale(capsys, tmp_path, scale):
    line = one_error_line(capsys, "synth", "--out", str(tmp_path / "s"), "--scale", scale)
    assert "scale must be positive" in line


# ---------------------------------------------------------------- the installed console script


def test_console_script_is_installed(synthetic_root):
    exe = Path(sys.executable).with_name("slidemap")
    assert exe.is_file(), f"console script not installed next to {sys.executable}"
    done = subprocess.run([str(exe), "describe", str(synthetic_root), "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    desc = json.loads(done.stdout)
    assert sorted(desc["sites"]) == ["china", "japan", "taiwan"]
    assert {desc["sites"][s]["crs"] for s in desc["sites"]} == {"EPSG:32648", "EPSG:32654", "EPSG:32651"}


def test_the_module_runs_as_the_command(tmp_path):
    """``python -m slidemap.cli`` (what benchmarks/map_throughput.py starts) is the ``slidemap`` command."""
    done = subprocess.run([sys.executable, "-m", "slidemap.cli", "describe", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("slidemap describe: error: ")
    assert str(tmp_path) in done.stderr and len(done.stderr.strip().splitlines()) == 1
