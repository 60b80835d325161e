"""The report's augmentation comparison (issue 17): augmentations.csv, its figure and section, checked by hand."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from slidemap.reporting.augmentations import (AUGMENT_COLUMNS, augment_of, augment_rows, csv_rows, figure_data,
                                              pooled, pooled_difference)
from slidemap.reporting.augment_section import augment_sentence
from slidemap.reporting.report import write_report

from run_records import metrics_record, write_runs

T_2 = 4.302652729911275  # t(0.975, 2): the 95% half-width of 3 seeds is T_2 * sd / sqrt(3)
HALF_3 = T_2 / math.sqrt(3)

# F1 per augmentation and test area of unet, 64 px, trained on taiwan; one value per seed (0, 1, 2).
# The pooled `all` area is 0.5 everywhere and never counted. `full` is `none` + 0.10 on every site area.
NONE = {"taiwan": (0.70, 0.80, 0.90), "china": (0.50, 0.52, 0.54), "japan": (0.20, 0.30, 0.40)}
D4 = {"taiwan": (0.75, 0.90, 0.90), "china": (0.40, 0.50, 0.60), "japan": (0.30, 0.30, 0.30)}
FULL = {a: tuple(f + 0.10 for f in fs) for a, fs in NONE.items()}
TABLE = {"none": NONE, "d4": D4, "full": FULL}


def records(table: dict[str, dict] = TABLE, seeds: tuple[int, ...] = (0, 1, 2), scenario: str = "taiwan",
            window: int = 64) -> list[dict]:
    """metrics.json records as run.py writes them; `none` runs carry no `augment` key (runs from before the group)."""
    return [metrics_record("unet", window, scenario, seed, {a: f[seed] for a, f in per_area.items()},
                           stopped_by="early_stopping", **({} if augment == "none" else {"augment": augment}))
            for augment, per_area in table.items() for seed in seeds]


def _by_augment(recs: list[dict]) -> dict:
    return {r.augment: r for r in augment_rows(recs)}


def test_rows_by_hand() -> None:
    rows = _by_augment(records())
    assert list(rows) == ["none", "d4", "full"]
    none, d4 = rows["none"], rows["d4"]
    assert (none.model, none.scenario, none.window, none.inputs, none.seeds) == ("unet", "taiwan", 64, "post",
                                                                                 (0, 1, 2))
    assert none.runs == 3 and none.epochs == (5, 6, 7)
    own = none.stats["own_site_f1"]
    assert (own.n, own.mean, own.sd) == (3, pytest.approx(0.80), pytest.approx(0.10))
    assert own.half_width == pytest.approx(HALF_3 * 0.10)
    transfer = none.stats["transfer_f1"]  # per seed (china + japan) / 2: 0.35, 0.41, 0.47
    assert (transfer.mean, transfer.sd) == (pytest.approx(0.41), pytest.approx(0.06))
    assert transfer.low == pytest.approx(0.41 - HALF_3 * 0.06)
    mean = none.stats["mean_f1"]  # per seed 1.4 / 3, 1.62 / 3, 1.84 / 3: steps of 0.22 / 3
    assert (mean.mean, mean.sd) == (pytest.approx(1.62 / 3), pytest.approx(0.22 / 3))
    assert none.diff["own_site_f1"].n == 0 and math.isnan(none.diff["own_site_f1"].mean)
    # d4: own 0.75, 0.90, 0.90 -> mean 0.85, sd sqrt(0.0075); paired with none: 0.05, 0.10, 0.00
    assert d4.stats["own_site_f1"].sd == pytest.approx(math.sqrt(0.0075))
    diff = d4.diff["own_site_f1"]
    assert (diff.n, diff.mean, diff.sd) == (3, pytest.approx(0.05), pytest.approx(0.05))
    assert (diff.low, diff.high) == (pytest.approx(0.05 - HALF_3 * 0.05), pytest.approx(0.05 + HALF_3 * 0.05))
    # transfer: d4 0.35, 0.40, 0.45 vs none 0.35, 0.41, 0.47 -> 0.00, -0.01, -0.02
    t_diff = d4.diff["transfer_f1"]
    assert (t_diff.mean, t_diff.sd) == (pytest.approx(-0.01), pytest.approx(0.01))
    # mean F1: d4 1.45 / 3, 1.70 / 3, 1.80 / 3 vs none -> 0.05 / 3, 0.08 / 3, -0.04 / 3
    m_diff = d4.diff["mean_f1"]
    assert m_diff.mean == pytest.approx(0.03 / 3)
    assert m_diff.sd == pytest.approx(math.sqrt(((0.02 / 3) ** 2 + (0.05 / 3) ** 2 + (0.07 / 3) ** 2) / 2))


def test_csv_rows_match_the_columns() -> None:
    rows = {r[0]: dict(zip(AUGMENT_COLUMNS, r)) for r in csv_rows(augment_rows(records()))}
    d4 = rows["d4"]
    assert (d4["model"], d4["scenario"], d4["window"], d4["inputs"], d4["runs"]) == ("unet", "taiwan", 64, "post", 3)
    assert d4["own_site_f1_mean"] == pytest.approx(0.85)
    assert d4["own_site_f1_ci_low"] == pytest.approx(0.85 - HALF_3 * math.sqrt(0.0075))
    assert d4["own_site_f1_ci_high"] == 1.0  # 0.85 + 0.215 cut at 1, the most an F1 can be
    assert d4["own_site_f1_minus_none_pairs"] == 3
    assert d4["own_site_f1_minus_none_mean"] == pytest.approx(0.05)
    assert d4["own_site_f1_minus_none_ci_low"] == pytest.approx(0.05 - HALF_3 * 0.05)
    assert rows["none"]["mean_f1_minus_none_pairs"] == "" and rows["none"]["mean_f1_minus_none_mean"] == ""


def test_one_seed_has_no_interval() -> None:
    rows = _by_augment(records(seeds=(0,)))
    own = rows["d4"].stats["own_site_f1"]
    assert (own.n, own.mean) == (1, pytest.approx(0.75)) and math.isnan(own.sd) and not own.has_interval
    diff = rows["d4"].diff["own_site_f1"]
    assert (diff.n, diff.mean) == (1, pytest.approx(0.05)) and not diff.has_interval
    d4 = dict(zip(AUGMENT_COLUMNS, next(r for r in csv_rows(list(rows.values())) if r[0] == "d4")))
    assert d4["own_site_f1_sd"] == d4["own_site_f1_ci_low"] == d4["own_site_f1_ci_high"] == ""
    assert d4["own_site_f1_minus_none_ci_low"] == "" and d4["own_site_f1_minus_none_pairs"] == 1
    assert "single pair" in augment_sentence(list(rows.values()), "d4")
    assert math.isnan(figure_data(list(rows.values()))["intervals"]["unet, d4"][0][0])


def test_scenario_all_has_no_own_site_or_transfer_f1() -> None:
    row = _by_augment(records(scenario="all"))["d4"]
    assert row.stats["own_site_f1"].n == row.stats["transfer_f1"].n == 0
    assert row.stats["mean_f1"].mean == pytest.approx((1.45 + 1.70 + 1.80) / 9)


def test_windows_and_input_sets_split_the_rows() -> None:
    recs = records(window=32) + records(window=64)
    for r in records(table={"none": NONE}):
        recs.append({**r, "inputs": "change"})
    rows = augment_rows(recs)
    keys = [(r.augment, r.window, r.inputs) for r in rows]
    assert len(keys) == len(set(keys)) == 7
    assert rows[0].window == 32  # the paper's order: window, input set, then none, d4, full
    assert [r.augment for r in rows[:3]] == ["none", "d4", "full"]
    assert {r.augment: r.diff["own_site_f1"].n for r in rows if r.window == 32} == {"none": 0, "d4": 3, "full": 3}
    assert set(figure_data(rows)["series"]) == {"unet, none, 32 px, post", "unet, d4, 32 px, post",
                                                "unet, full, 32 px, post", "unet, none, 64 px, post",
                                                "unet, d4, 64 px, post", "unet, full, 64 px, post",
                                                "unet, none, 64 px, change"}


def test_pooled_values_and_differences() -> None:
    rows = augment_rows(records() + records(scenario="china", table={"none": NONE, "d4": D4}))
    assert augment_of(records()[0]) == "none"
    # own site: taiwan area of the taiwan runs, china area of the china runs
    assert pooled(rows, "d4", "own_site_f1").n == 6
    assert pooled(rows, "d4", "own_site_f1").mean == pytest.approx((0.75 + 0.90 + 0.90 + 0.40 + 0.50 + 0.60) / 6)
    diff = pooled_difference(rows, "d4", "own_site_f1")  # taiwan 0.05, 0.10, 0.00; china -0.10, -0.02, 0.06
    assert diff.n == 6 and diff.mean == pytest.approx(0.09 / 6)
    assert pooled_difference(rows, "none", "own_site_f1").n == 0
    assert pooled_difference(rows, "full", "own_site_f1").n == 3  # full ran on taiwan only


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(write_runs(tmp_path_factory.mktemp("augment") / "sweep", records()))


def _section(md: str, heading: str) -> str:
    return md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_report_writes_the_csv_and_the_figure(report: Path) -> None:
    rows = {r["augment"]: r for r in csv.DictReader((report.parent / "augmentations.csv").open())}
    assert tuple(next(csv.reader((report.parent / "augmentations.csv").open()))) == AUGMENT_COLUMNS
    assert list(rows) == ["none", "d4", "full"]
    assert float(rows["none"]["own_site_f1_mean"]) == pytest.approx(0.80)
    assert float(rows["none"]["own_site_f1_ci_low"]) == pytest.approx(0.80 - HALF_3 * 0.10)
    assert float(rows["full"]["mean_f1_minus_none_mean"]) == pytest.approx(0.10)
    with Image.open(report.parent / "augmentations_mean_f1.png") as image:
        assert image.size[0] > 500
    assert "augmentations" in json.loads((report.parent / "figures.json").read_text())
    assert (report.parent / "input_sets.csv").exists()  # the input-set comparison is still written


def test_report_section_text(report: Path) -> None:
    md = report.read_text()
    section = _section(md, "Augmentations")
    assert "[augmentations.csv](augmentations.csv)" in section and "(augmentations_mean_f1.png)" in section
    assert "| scenario | model | augment | n | mean F1 | own-site F1 | transfer F1 | mean F1 − none (paired) |" \
        in section
    none = next(x for x in section.splitlines() if x.startswith("| taiwan | unet | none |"))
    cells = [c.strip() for c in none.strip("|").split("|")]
    assert cells[3] == "3"
    assert cells[5] == f"80.00 ({100 * (0.80 - HALF_3 * 0.10):.2f}–100.00) (10.00)"  # 80 ± 24.84, cut at 100%
    assert cells[6] == f"41.00 ± {100 * HALF_3 * 0.06:.2f} (6.00)"
    assert cells[7] == "–"
    d4 = [c.strip() for c in next(x for x in section.splitlines() if x.startswith("| taiwan | unet | d4 |"))
          .strip("|").split("|")]
    sd = math.sqrt(((0.02 / 3) ** 2 + (0.05 / 3) ** 2 + (0.07 / 3) ** 2) / 2)
    assert d4[7] == f"1.00 ± {100 * HALF_3 * sd:.2f}"
    assert "- `d4`: 1.00 F1 points vs `none`" in section and "the interval includes 0: no difference" in section
    assert "- `full`: 10.00 F1 points vs `none`" in section and "excludes 0: better than `none`" in section
    assert "## Input sets and augmentations" in md  # the existing section keeps its place


def test_no_comparison_with_a_single_augmentation(tmp_path: Path) -> None:
    report = write_report(write_runs(tmp_path / "sweep", records(table={"d4": D4})))
    assert not (report.parent / "augmentations.csv").exists()
    assert not (report.parent / "augmentations_mean_f1.png").exists()
    assert "## Augmentations" not in report.read_text()


def test_the_comparison_goes_to_an_active_wandb_run(tmp_path: Path, fake_wandb: dict) -> None:
    logged = fake_wandb
    write_report(write_runs(tmp_path / "sweep", records()), tmp_path / "out")
    kind, columns, data = logged["report/augmentations"]
    assert kind == "table" and tuple(columns) == AUGMENT_COLUMNS and [r[0] for r in data] == ["none", "d4", "full"]
    assert logged["report/augmentations"][2][0][columns.index("own_site_f1_mean")] == pytest.approx(0.80)
    kind, path = logged["report/augmentations_mean_f1"]  # the figure, under its own key next to the table
    assert kind == "image" and path == tmp_path / "out" / "augmentations_mean_f1.png" and path.exists()
    # augmented runs are input sets post+<augment> too: that table and its figure keep separate keys as well
    assert logged["report/input_sets"][0] == "table" and logged["report/input_sets_mean_f1"][0] == "image"
