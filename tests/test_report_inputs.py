"""`slidemap report` over a sweep of several input sets, and both rule baselines (NDVI and rdNDVI) in the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fake_sites as fs
from slidemap.reporting.figures import input_set_data
from slidemap.reporting.sweep import scan_sweep
from slidemap.reporting.report import write_report
from test_report import AREAS, F1, INPUTS_F1, MISSING, make_sweep

SITES = ("taiwan", "china", "japan")
VEGETATION = (400, 500, 700, 3000)  # B2, B3, B4, B8: NDVI 0.62
BARE = (900, 1100, 1500, 1800)  # NDVI 0.09
LANDSLIDE_ROWS, BARE_ROWS = slice(3, 8), slice(10, 13)
STRIPE_PX = ((0.2, 3.3), (19.8, 3.3), (19.8, 7.6), (0.2, 7.6))
"""The landslide: rows 3-7 across the whole site, so that the training and the test blocks both hold some."""
NDVI_RULE_F1 = 10 / 13
"""The NDVI rule cannot tell the landslide (5 rows) from bare ground that was bare before (3 rows): it marks both,
F1 = 2 * 5 / (2 * 5 + 3) on every test area. The rdNDVI rule sees only the landslide lost its vegetation: F1 = 1."""


def _bands(bare_rows: list[slice]) -> np.ndarray:
    bands = fs.constant_bands(VEGETATION)
    for rows in bare_rows:
        bands[:, rows, :] = np.asarray(BARE, np.uint16)[:, None, None]
    return bands


def make_sites(root: Path, with_pre: tuple[str, ...] = SITES) -> Path:
    """Three tiny sites: a fresh landslide stripe and an old bare stripe; a pre-event image for ``with_pre``."""
    for name in SITES:
        folder = fs.make_site(root / name, bands=_bands([LANDSLIDE_ROWS, BARE_ROWS]), polygons_px=(STRIPE_PX,))
        if name in with_pre:  # before the event only the old bare stripe was bare
            fs.write_raster(folder / "s2_pre.tif", _bands([BARE_ROWS]), fs.S2_CRS, fs.s2_transform(), nodata=0)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep over the post and change input sets of sites that all have a pre-event image."""
    folder = tmp_path_factory.mktemp("inputs")
    sweep = make_sweep(folder / "sweep", str(make_sites(folder / "sites")), inputs=("post", "change"))
    return write_report(sweep)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _section(md: str, heading: str) -> str:
    return md.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def _table_row(section: str, start: str) -> list[str]:
    line = next(x for x in section.splitlines() if x.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")]


def test_input_set_numbers_are_the_hand_computed_means(report: Path) -> None:
    rows = {(r["kind"], r["name"], r["inputs"], r["scenario"]): r
            for r in csv.DictReader((report.parent / "input_sets.csv").open())}
    # scenario all, unet: windows 32 and 64, site test areas taiwan, china, japan (pooled `all` left out)
    post = _mean([0.70, 0.60, 0.50, 0.72, 0.62, 0.55])
    assert float(rows[("model", "unet", "post", "all")]["mean_f1"]) == pytest.approx(post)
    assert float(rows[("model", "unet", "change", "all")]["mean_f1"]) == pytest.approx(post + 0.10)
    assert rows[("model", "unet", "change", "all")]["own_site_f1"] == ""  # `all` trains on every site
    assert rows[("model", "unet", "post", "all")]["runs"] == "2"
    # scenario taiwan, resunet: window 32 only; own site = the taiwan test area
    assert float(rows[("model", "resunet", "change", "taiwan")]["mean_f1"]) == pytest.approx(
        _mean([0.87, 0.45, 0.20]))
    assert float(rows[("model", "resunet", "change", "taiwan")]["own_site_f1"]) == pytest.approx(0.87)
    assert float(rows[("model", "resunet", "post", "taiwan")]["own_site_f1"]) == pytest.approx(0.77)
    for rule, f1 in (("rule baseline (NDVI)", NDVI_RULE_F1), ("rule baseline (rdNDVI)", 1.0)):
        assert float(rows[("rule", rule, "", "all")]["mean_f1"]) == pytest.approx(f1)
        assert float(rows[("rule", rule, "", "taiwan")]["own_site_f1"]) == pytest.approx(f1)
    assert len(rows) == (2 * 2 + 2) * 2  # (models x input sets + rules) x scenarios

    section = _section(report.read_text(), "Input sets")
    assert "| model | inputs | all mean | taiwan mean | taiwan own |" in section
    assert _table_row(section, "| unet | change |")[2:] == [f"{100 * (post + 0.1):.2f}",
                                                            f"{100 * _mean([0.85, 0.40, 0.30]):.2f}", "85.00"]
    assert _table_row(section, "| *rule baseline (rdNDVI)* |")[2:] == ["100.00"] * 3
    assert "`change` (B2, B3, B4, B8, dndvi, rdndvi, slope)" in section
    assert "`post` (channels not recorded)" in section  # a run from before the input sets


def test_input_set_data_by_hand() -> None:
    runs = [{"model": "unet", "window": w, "scenario": "china", "inputs": i,
             "areas": {"taiwan": {"f1": f}, "china": {"f1": f + 0.2}, "all": {"f1": 0.99}}}
            for w, i, f in ((32, "post", 0.1), (64, "post", 0.3), (64, "change", 0.5))]
    rule = {"scenarios": {"china": {"taiwan": {"f1": 0.2}, "china": {"f1": 0.4}, "all": {"f1": 0.3}}}}
    data = input_set_data(runs, {"rule": rule})
    rows = {(r["name"], r["inputs"]): r for r in data["rows"]}
    assert data["scenarios"] == ["china"] and list(rows) == [("unet", "post"), ("unet", "change"), ("rule", "")]
    assert rows[("unet", "post")]["mean_f1"]["china"] == pytest.approx((0.1 + 0.3 + 0.3 + 0.5) / 4)
    assert rows[("unet", "post")]["own_f1"]["china"] == pytest.approx((0.3 + 0.5) / 2)
    assert rows[("unet", "change")]["mean_f1"]["china"] == pytest.approx((0.5 + 0.7) / 2)
    assert rows[("rule", "")]["mean_f1"]["china"] == pytest.approx(0.3)
    assert rows[("rule", "")]["own_f1"]["china"] == pytest.approx(0.4)


def test_paper_tables_get_a_row_per_input_set(report: Path) -> None:
    md = report.read_text()
    table = md.split("### Scenario all:", 1)[1].split("###", 1)[0]
    assert "| model | window | inputs | epochs | taiwan P |" in table
    unet64 = _table_row(table, "| unet | 64 | post |")
    unet64_change = _table_row(table, "| unet | 64 | change |")
    # one seed per cell: values alone, no best marked (these were bold before the seed statistics)
    assert unet64[7:10] == ["67.00", "57.00", "62.00"]  # china: beaten by its change run
    assert unet64_change[7:10] == ["77.00", "67.00", "72.00"]
    assert _table_row(table, "| resunet | 64 | change |")[4:7] == ["95.00", "85.00", "90.00"]
    assert _table_row(table, "| resunet | 64 | post |")[4:7] == ["85.00", "75.00", "80.00"]  # best without change
    assert _table_row(table, "| unet | 32 | post |")[4] == "95.00"  # taiwan P ties the change runs' best
    assert "**" not in table
    rules = [line for line in table.splitlines() if line.startswith("| *rule baseline")]
    assert [r.split("|")[1].strip() for r in rules] == ["*rule baseline (NDVI)*", "*rule baseline (rdNDVI)*"]
    assert "input sets post, change)" in md and "24 expected" in md


def test_missing_runs_are_named_per_input_set(report: Path) -> None:
    sweep = scan_sweep(report.parent.parent, progress=False)
    missing = dict(sweep.missing())
    assert set(missing) == MISSING | {f"{name} inputs=change" for name in MISSING}
    assert missing["model=unet window=64 scenario=taiwan"].startswith("incomplete")
    assert missing["model=unet window=64 scenario=taiwan inputs=change"].startswith("absent")
    assert "| model=resunet window=128 scenario=taiwan inputs=change | absent" in _section(report.read_text(),
                                                                                          "Missing runs")


def test_runs_csv_has_the_input_set(report: Path) -> None:
    rows = list(csv.DictReader((report.parent / "runs.csv").open()))
    assert len(rows) == 2 * len(F1) * len(AREAS)
    change = next(r for r in rows if (r["model"], r["window"], r["scenario"], r["inputs"], r["area"])
                  == ("resunet", "64", "all", "change", "china"))
    assert float(change["f1"]) == pytest.approx(0.61 + INPUTS_F1["change"])
    assert change["run_dir"] == "resunet-64-all-change"
    assert sum(r["inputs"] == "post" for r in rows) == len(F1) * len(AREAS)


def test_both_rules_are_in_the_report_when_every_site_has_a_pre_event_image(report: Path) -> None:
    rows = list(csv.DictReader((report.parent / "baseline.csv").open()))
    assert {(r["method"], r["threshold_name"]) for r in rows} == {("ndvi", "ndvi_max"), ("rdndvi", "rdndvi_max")}
    assert len(rows) == 2 * 2 * len(AREAS)  # rules x scenarios x test areas
    for r in rows:
        assert float(r["f1"]) == pytest.approx(NDVI_RULE_F1 if r["method"] == "ndvi" else 1.0), r
    assert all(float(r["threshold"]) < 0 for r in rows if r["method"] == "rdndvi")  # a loss of vegetation
    section = _section(report.read_text(), "Rule baselines")
    assert "| rdNDVI + slope | taiwan | rdNDVI < " in section and "| NDVI + slope | all | NDVI < " in section
    assert "absent" not in section


def test_the_rdndvi_rule_is_absent_with_its_reason(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep", str(make_sites(tmp_path / "sites", with_pre=("taiwan", "china"))))
    md = write_report(sweep, tmp_path / "out").read_text()
    section = _section(md, "Rule baselines")
    assert "The rdNDVI rule is absent: site(s) japan have no pre-event image (s2_pre.tif)." in section
    assert "rdNDVI + slope |" not in section and "rdNDVI)*" not in md
    assert {r["method"] for r in csv.DictReader((tmp_path / "out" / "baseline.csv").open())} == {"ndvi"}
    assert not (tmp_path / "out" / "input_sets.csv").exists()  # one input set: no input-set section


def test_input_set_figure_is_a_readable_png(report: Path) -> None:
    out = report.parent
    path = out / "input_sets_mean_f1.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "](input_sets_mean_f1.png)" in report.read_text()
    with Image.open(path) as image:
        assert 800 <= image.size[0] <= 5000 and 500 <= image.size[1] <= 3000, image.size
    data = json.loads((out / "figures.json").read_text())["input_sets"]
    assert data["scenarios"] == ["all", "taiwan"]
    assert [r["kind"] for r in data["rows"]] == ["model"] * 4 + ["rule"] * 2


def test_paper_figures_of_a_mixed_sweep_use_the_single_date_runs_only(report: Path) -> None:
    """Figs. 10-11 and the transfer matrix stay comparable with the paper: `change` runs (F1 + 0.10) are left out."""
    data = json.loads((report.parent / "figures.json").read_text())
    post = _mean([0.70, 0.60, 0.50, 0.72, 0.62, 0.55])  # unet, scenario all, windows 32 and 64, three site areas
    assert data["scenario_model"]["all"]["unet"] == pytest.approx(post)  # fractions
    assert "(input set post only)" in _section(report.read_text(), "Mean F1 per scenario and model (paper Fig. 10)")
