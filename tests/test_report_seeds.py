"""Seeds in `slidemap report`: the statistics by hand, a sweep of several seeds per cell as mean +- interval,
summary.csv, the best mark only where intervals separate, and error bars on Figs. 10 and 11."""

from __future__ import annotations

import csv
import json
import math
from itertools import product
from pathlib import Path

import pytest

from slidemap.errors import InputError
from slidemap.reporting.claims import CLAIMS_COLUMNS
from slidemap.reporting.figures import figure_data
from slidemap.reporting.report import write_report
from slidemap.reporting.stats import (CONTRADICTED, INCONCLUSIVE, SUPPORTED, Interval, paired_differences,
                                      separated, t_interval, verdict, welch_interval)
from slidemap.reporting.sweep import scan_sweep
from slidemap.reporting.tables import SUMMARY_COLUMNS

from run_records import metrics_record, write_runs

T975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445}
"""Student's t, 97.5% quantile, by degrees of freedom (printed tables)."""


def test_t_interval_by_hand() -> None:
    ci = t_interval([0.70, 0.80, 0.90])
    assert ci.n == 3 and ci.mean == pytest.approx(0.80) and ci.sd == pytest.approx(0.10)
    half = 4.302653 * 0.10 / math.sqrt(3)  # 0.248414...
    assert half == pytest.approx(0.248414, abs=1e-6)
    assert ci.half_width == pytest.approx(half, rel=1e-6)
    assert (ci.low, ci.high) == pytest.approx((0.80 - half, 0.80 + half), rel=1e-6)
    two = t_interval([0.5, 0.7])  # sd = 0.1 * sqrt(2), df 1
    assert two.sd == pytest.approx(math.sqrt(0.02))
    assert two.half_width == pytest.approx(T975[1] * math.sqrt(0.02) / math.sqrt(2), rel=1e-6)


def test_a_single_run_has_no_interval() -> None:
    one = t_interval([0.6])
    assert one.n == 1 and one.mean == 0.6 and not one.has_interval
    assert math.isnan(one.sd) and math.isnan(one.low) and math.isnan(one.high)
    assert t_interval([]).n == 0 and math.isnan(t_interval([]).mean)
    assert t_interval([0.4, float("nan"), 0.6]).n == 2  # a NaN is no value
    assert not separated(Interval(1, 0.9), t_interval([0.1, 0.2]))


def test_welch_interval_by_hand() -> None:
    # equal variances (1/3 each, n = 3): se = sqrt(2/3), Welch-Satterthwaite df = 2 * (3 - 1) = 4
    d = welch_interval([1.0, 2.0, 3.0], [5.0, 6.0, 7.0])
    assert d.n == 6 and d.mean == pytest.approx(-4.0)
    assert d.half_width == pytest.approx(T975[4] * math.sqrt(2 / 3), rel=1e-6)
    # unequal: var 1 (n 3) vs var 2 (n 2): va = 1/3, vb = 1, df = (4/3)^2 / ((1/3)^2 / 2 + 1) = 32/19
    from scipy.stats import t

    u = welch_interval([1.0, 2.0, 3.0], [4.0, 6.0])
    assert u.mean == pytest.approx(-3.0)
    assert u.half_width == pytest.approx(t.ppf(0.975, 32 / 19) * math.sqrt(4 / 3), rel=1e-6)
    assert not welch_interval([1.0], [2.0, 3.0]).has_interval


def test_paired_differences_and_verdicts() -> None:
    a = {("china", 64, 0): 0.8, ("china", 64, 1): 0.7, ("japan", 64, 0): 0.5}
    b = {("china", 64, 1): 0.6, ("china", 64, 0): 0.75, ("taiwan", 64, 0): 0.1}
    assert paired_differences(a, b) == pytest.approx([0.05, 0.1])
    above, across, below = Interval(3, 2.0, 1.0, 0.5, 3.5), Interval(3, 1.0, 1.0, -0.5, 2.5), Interval(3, -2, 1, -3, -1)
    assert [verdict(i) for i in (above, across, below)] == [SUPPORTED, INCONCLUSIVE, CONTRADICTED]
    assert [verdict(i, side=-1) for i in (above, across, below)] == [CONTRADICTED, INCONCLUSIVE, SUPPORTED]
    assert verdict(Interval(1, 5.0)) == INCONCLUSIVE  # no interval: never supported
    assert verdict(Interval(4, 1.0, 1.0, 0.0, 2.0)) == INCONCLUSIVE  # touching 0 is not entirely above it


# F1 per (model, window, scenario) cell and test area, one value per seed (seeds 0, 1, 2; resunet-32 has seed 0 only).
# Precision = F1 + 0.05, recall = F1 - 0.05; the pooled `all` area is 0.5 everywhere.
SEED_F1 = {
    ("unet", 64, "taiwan"): {"taiwan": (0.70, 0.80, 0.90), "china": (0.50, 0.52, 0.54), "japan": (0.20, 0.30, 0.40)},
    ("resunet", 64, "taiwan"): {"taiwan": (0.60, 0.61, 0.62), "china": (0.30, 0.31, 0.32), "japan": (0.25,) * 3},
    ("resunet", 32, "taiwan"): {"taiwan": (0.50,), "china": (0.10,), "japan": (0.90,)},
}
HALF_3 = 4.302653 / math.sqrt(3)  # t(0.975, 2) / sqrt(3): the half-width of 3 seeds is HALF_3 * sd


def seed_records(table: dict = SEED_F1, inputs: str | None = None) -> list[dict]:
    """metrics.json records, one per run (seed), as run.py writes them (older runs: no inputs, cell, overrides)."""
    return [metrics_record(model, window, scenario, seed, {a: f[seed] for a, f in per_area.items()}, spread=0.05,
                           **({"inputs": inputs} if inputs else {}))
            for (model, window, scenario), per_area in table.items()
            for seed in range(len(next(iter(per_area.values()))))]


@pytest.fixture(scope="module")
def seed_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(write_runs(tmp_path_factory.mktemp("seeds") / "sweep", seed_records()))


def _cells(md: str, start: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")]


def test_all_runs_of_a_cell_are_kept_as_replicates(seed_report: Path) -> None:
    sweep = scan_sweep(seed_report.parent.parent, progress=False)
    assert len(sweep.runs) == 7
    assert [name for name, _ in sweep.missing()] == ["model=unet window=32 scenario=taiwan"]  # the grid's gap
    assert [r["seed"] for r in sweep.runs if r["model"] == "unet"] == [0, 1, 2]
    rows = list(csv.DictReader((seed_report.parent / "runs.csv").open()))
    assert len(rows) == 7 * 4


def test_a_failed_seed_of_a_finished_cell_is_listed_as_missing(tmp_path: Path) -> None:
    sweep = write_runs(tmp_path / "sweep", seed_records())
    for seed in (3, 4):
        job = sweep / f"unet-64-taiwan-post-seed{seed}" / ".hydra"
        job.mkdir(parents=True)
        (job / "config.yaml").write_text(f"model:\n  name: unet\nwindow: 64\nscenario:\n  name: taiwan\nseed: {seed}\n")
    missing = dict(scan_sweep(sweep, progress=False).missing())
    assert missing["model=unet window=64 scenario=taiwan seed=3"].startswith("incomplete: no metrics.json")
    assert "model=unet window=64 scenario=taiwan seed=4" in missing
    assert not any(name.endswith(("seed=0", "seed=1", "seed=2")) for name in missing)


def test_a_sweep_over_an_axis_outside_the_cell_is_refused_not_pooled(tmp_path: Path) -> None:
    """lr=1e-3,1e-4 in one sweep: two runs per cell and seed; pooled, they would pass for six seeds of one setting."""
    records = seed_records({("unet", 64, "taiwan"): SEED_F1[("unet", 64, "taiwan")]})
    for lr in ("0.001", "0.0001"):
        sweep = write_runs(tmp_path / "sweep" / f"lr{lr}", records)
        for job in sweep.iterdir():
            seed = job.name.rsplit("seed", 1)[1]
            overrides = ["model=unet", "scenario=taiwan", "window=64", f"lr={lr}", f"seed={seed}"]
            (job / "run.json").write_text(json.dumps({"overrides": sorted(overrides), "cell": "unet-64-taiwan-post"}))
    with pytest.raises(InputError, match=r"same cell \(model=unet window=64 scenario=taiwan\) and seed 0 as .*: "
                                         r"they differ in lr=0\.0001, lr=0\.001, an axis the report does not tell"):
        write_report(tmp_path / "sweep")
    assert not (tmp_path / "sweep" / "report").exists()
    assert scan_sweep(tmp_path / "sweep" / "lr0.001", progress=False).runs  # one setting's folder reports


def test_the_same_grid_twice_under_one_folder_is_refused(tmp_path: Path) -> None:
    write_runs(tmp_path / "multirun" / "a", seed_records())
    write_runs(tmp_path / "multirun" / "b", seed_records())
    with pytest.raises(InputError, match=r"not recorded \(no run.json\)"):  # runs from before run.json
        scan_sweep(tmp_path / "multirun", progress=False)
    for job in (tmp_path / "multirun").glob("*/*"):
        (job / "run.json").write_text(json.dumps({"overrides": ["model=unet"], "cell": "x"}))
    with pytest.raises(InputError, match=r"the same overrides twice \(two sweeps of one grid"):
        scan_sweep(tmp_path / "multirun", progress=False)


def test_summary_csv_by_hand(seed_report: Path) -> None:
    rows = list(csv.DictReader((seed_report.parent / "summary.csv").open()))
    assert tuple(rows[0])[:len(SUMMARY_COLUMNS)] == SUMMARY_COLUMNS == (
        "model", "window", "scenario", "inputs", "area", "n", "f1_mean", "f1_sd", "f1_ci_low", "f1_ci_high",
        "precision_mean", "precision_sd", "precision_ci_low", "precision_ci_high", "recall_mean", "recall_sd",
        "recall_ci_low", "recall_ci_high")
    assert len(rows) == 3 * 4  # cells x test areas
    by = {(r["model"], r["window"], r["area"]): r for r in rows}
    unet = by[("unet", "64", "taiwan")]
    assert (unet["scenario"], unet["inputs"], unet["n"]) == ("taiwan", "post", "3")
    assert float(unet["f1_mean"]) == pytest.approx(0.80) and float(unet["f1_sd"]) == pytest.approx(0.10)
    assert float(unet["f1_ci_low"]) == pytest.approx(0.80 - 0.248414, abs=1e-6)
    assert float(unet["f1_ci_high"]) == 1.0  # 0.80 + 0.248 is cut at 1, the largest F1
    assert float(unet["precision_mean"]) == pytest.approx(0.85) and float(unet["recall_mean"]) == pytest.approx(0.75)
    assert float(unet["recall_ci_low"]) == pytest.approx(0.75 - 0.248414, abs=1e-6)
    china = by[("resunet", "64", "china")]
    assert float(china["f1_sd"]) == pytest.approx(0.01)
    assert float(china["f1_ci_high"]) - float(china["f1_ci_low"]) == pytest.approx(2 * HALF_3 * 0.01, rel=1e-5)
    single = by[("resunet", "32", "japan")]
    assert single["n"] == "1" and float(single["f1_mean"]) == pytest.approx(0.90)
    assert single["f1_sd"] == single["f1_ci_low"] == single["f1_ci_high"] == ""  # one run: no interval


def test_tables_show_mean_and_interval_and_mark_only_separated_bests(seed_report: Path) -> None:
    md = seed_report.read_text()
    assert "| model | window | n | epochs | taiwan P |" in md
    unet = _cells(md, "| unet | 64 |")
    resunet64, resunet32 = _cells(md, "| resunet | 64 |"), _cells(md, "| resunet | 32 |")
    assert unet[2:4] == ["3", "5–7"] and resunet32[2:4] == ["1", "5"]
    # taiwan F1: unet 80 ± 24.84 (cut at 100: 55.16-100) overlaps resunet-64's 61 ± 2.48: best mean, not marked
    assert unet[6] == f"80.00 ({80 - 100 * HALF_3 * 0.10:.2f}–100.00)" == "80.00 (55.16–100.00)"
    assert resunet64[6] == f"61.00 ± {100 * HALF_3 * 0.01:.2f}"
    # china F1: unet 52 ± 4.97 lies above resunet-64's 31 ± 2.48: marked
    assert unet[9] == f"**52.00 ± {100 * HALF_3 * 0.02:.2f}**"
    assert resunet64[9] == f"31.00 ± {100 * HALF_3 * 0.01:.2f}"
    # japan F1: the best mean (90) is a single run: no interval, nothing marked
    assert resunet32[12] == "90.00" and "**" not in unet[12] + resunet64[12]
    assert resunet64[12] == "25.00 ± 0.00"  # three identical seeds: an interval of width 0
    assert "seeds 0, 1, 2; their number in column `n`" in md and "a value without ± is a single run" in md


def test_figure_bars_are_means_of_per_seed_means_with_intervals() -> None:
    data = figure_data(seed_records())
    # Fig. 11, unet 64 px trained on taiwan: each seed's mean over the three site test areas
    seeds = [(0.70 + 0.50 + 0.20) / 3, (0.80 + 0.52 + 0.30) / 3, (0.90 + 0.54 + 0.40) / 3]
    mean = sum(seeds) / 3
    sd = math.sqrt(sum((s - mean) ** 2 for s in seeds) / 2)
    assert data["window_scenario"]["unet"]["taiwan"][64] == pytest.approx(mean)
    assert data["window_scenario_ci"]["unet"]["taiwan"][64] == pytest.approx([mean - HALF_3 * sd, mean + HALF_3 * sd],
                                                                            rel=1e-6)
    # Fig. 10, resunet on taiwan: seed 0 averages both windows (6 values), seeds 1 and 2 only 64 px (3 values)
    seeds = [(0.60 + 0.30 + 0.25 + 0.50 + 0.10 + 0.90) / 6, (0.61 + 0.31 + 0.25) / 3, (0.62 + 0.32 + 0.25) / 3]
    assert data["scenario_model"]["taiwan"]["resunet"] == pytest.approx(sum(seeds) / 3)
    low, high = data["scenario_model_ci"]["taiwan"]["resunet"]
    assert (low + high) / 2 == pytest.approx(sum(seeds) / 3)
    assert data["seeds"] == [0, 1, 2]
    one = figure_data([r for r in seed_records() if r["seed"] == 0])  # one seed: no interval
    assert all(math.isnan(v) for v in one["window_scenario_ci"]["unet"]["taiwan"][64])


def test_figures_of_several_seeds_say_what_the_error_bars_are(seed_report: Path) -> None:
    out = seed_report.parent
    data = json.loads((out / "figures.json").read_text())
    assert data["scenario_model_ci"]["taiwan"]["unet"][0] < data["scenario_model"]["taiwan"]["unet"]
    md = seed_report.read_text()
    fig10 = md.split("(paper Fig. 10)", 1)[1].split("\n## ", 1)[0]
    assert "the 95% Student-t interval of these per-seed means" in fig10
    assert _cells(fig10, "| unet |")[1].startswith("54.00 ± ")
    for name in ("fig10_mean_f1_scenario_model", "fig11_mean_f1_window_scenario"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_claims_csv_and_section(seed_report: Path) -> None:
    rows = {r["claim"]: r for r in csv.DictReader((seed_report.parent / "claims.csv").open())}
    assert list(next(iter(rows.values()))) == list(CLAIMS_COLUMNS) == [
        "claim", "statement", "comparison", "effect", "ci_low", "ci_high", "n", "verdict", "reason"]
    a = rows["a-resunet-beats-unet-own-site"]
    # resunet minus unet on taiwan's own test area, paired by seed at 64 px: -0.10, -0.19, -0.28 (sd 0.09)
    half = 100 * HALF_3 * 0.09
    assert (a["n"], a["verdict"]) == ("3", "inconclusive") and float(a["effect"]) == pytest.approx(-19.0)
    assert float(a["ci_low"]) == pytest.approx(-19.0 - half, abs=1e-3)
    assert "(1 run(s) without a partner left out)" in a["comparison"]  # resunet-32 has no unet twin
    assert rows["c1-unet-best-at-128"]["verdict"] == "untestable" and rows["c1-unet-best-at-128"]["effect"] == ""
    md = seed_report.read_text()
    section = md.split("## The paper's claims, judged", 1)[1].split("\n## ", 1)[0]
    assert "| `a-resunet-beats-unet-own-site` |" in section and "| -19.00 | [-41.36, +3.36] | 3 | **inconclusive** |" \
        in section
    assert "**untestable**: the sweep has no unet runs at 128 px outside scenario all" in section
    assert "The sweep has 3 seeds; pairs are runs of the same seed." in section


def test_the_report_says_how_training_ended() -> None:
    from slidemap.reporting.report import stopping_note

    runs = [{"stopped_by": "early_stopping"}, {"stopped_by": "max_epochs"}, {"stopped_by": "early_stopping"}, {}]
    assert stopping_note(runs) == ("Training ended: 2 of 4 by early stopping, 1 at the epoch cap (trainer.max_epochs), "
                                   "1 unrecorded.")
    assert stopping_note([]) == ""


def test_a_seed_the_sweep_asked_for_but_never_ran_is_missing(tmp_path: Path) -> None:
    sweep = write_runs(tmp_path / "sweep", seed_records())
    ran = {((r["model"], r["window"], r["scenario"]), r["seed"]) for r in seed_records()}
    keys = {k for k, _ in ran}
    models = ",".join(sorted({k[0] for k in keys}))
    windows = ",".join(str(w) for w in sorted({k[1] for k in keys}))
    scenarios = ",".join(sorted({k[2] for k in keys}))
    (sweep / "multirun.yaml").write_text(
        f"hydra:\n  overrides:\n    task:\n    - model={models}\n    - window={windows}\n    - scenario={scenarios}\n"
        "    - seed=0,1,2,3\nmodel:\n  name: unet\nwindow: 64\nscenario:\n  name: all\nseed: 0\n")
    scanned = scan_sweep(sweep, progress=False)
    missing = dict(scanned.missing())
    expected = {f"model={m} window={w} scenario={s} seed={seed}" for m, w, s in keys for seed in range(4)
                if ((m, w, s), seed) not in ran}
    assert {name for name in expected if name.endswith("seed=3")} == {f"model={m} window={w} scenario={s} seed=3"
                                                                     for m, w, s in keys}
    assert set(missing) == expected | {f"model={m} window={w} scenario={s}"
                                      for m, w, s in product(models.split(","), map(int, windows.split(",")),
                                                             scenarios.split(",")) if (m, w, s) not in keys}
    assert all(missing[name].startswith("absent") for name in expected)


def test_intervals_of_a_fraction_are_cut_to_its_range() -> None:
    from slidemap.reporting.stats import bounded
    from slidemap.reporting.tables import cell_stats, pct_interval

    ci = t_interval([0.70, 0.80, 0.90])  # 0.80 ± 0.248: the t-interval reaches 1.048
    cut = bounded(ci)
    assert (cut.low, cut.high) == pytest.approx((0.80 - 0.248414, 1.0), abs=1e-6)
    assert (cut.mean, cut.sd, cut.n) == (ci.mean, ci.sd, 3)
    assert bounded(t_interval([0.5])).n == 1 and not bounded(t_interval([0.5])).has_interval
    low = bounded(t_interval([0.0, 0.02, 0.10]))  # near 0 the lower bound is cut at 0
    assert low.low == 0.0 and low.high == pytest.approx(0.04 + T975[2] * math.sqrt(0.0028) / math.sqrt(3))
    runs = [{"areas": {"taiwan": {"precision": p, "recall": p, "f1": p, "iou": p}}} for p in (0.70, 0.80, 0.90)]
    assert cell_stats(runs)["taiwan"]["f1"].high == 1.0
    # a cut interval is not symmetric: shown as its bounds, not as a misleading ± half-width
    assert pct_interval(cut.mean, cut.low, cut.high) == "80.00 (55.16–100.00)"
    assert pct_interval(0.8, 0.7, 0.9) == "80.00 ± 10.00"


def test_transfer_matrix_and_input_sets_carry_intervals_over_seeds() -> None:
    from slidemap.reporting.figures import input_set_data

    data = figure_data(seed_records())
    t = data["transfer"]
    assert t["scenarios"] == ["taiwan"] and t["areas"] == ["taiwan", "china", "japan", "all"]
    # china test area, trained on taiwan: per seed the mean over unet-64, resunet-64 (and resunet-32 for seed 0)
    seeds = [(0.50 + 0.30 + 0.10) / 3, (0.52 + 0.31) / 2, (0.54 + 0.32) / 2]
    ci = t_interval(seeds)
    assert t["f1"][0][1] == pytest.approx(ci.mean)
    assert t["ci"][0][1] == pytest.approx([ci.low, ci.high], rel=1e-6)
    assert t["ci"][0][3] == pytest.approx([0.5, 0.5])  # the pooled area is 0.5 in every run: a zero-width interval
    rows = {(r["name"], r["inputs"]): r for r in input_set_data(seed_records())["rows"]}
    own = t_interval([0.70, 0.80, 0.90])
    assert rows[("unet", "post")]["own_f1"]["taiwan"] == pytest.approx(0.80)
    assert rows[("unet", "post")]["own_f1_ci"]["taiwan"] == pytest.approx([own.low, 1.0], rel=1e-6)  # cut at 1
    one = input_set_data([r for r in seed_records() if r["seed"] == 0])["rows"][0]
    assert all(math.isnan(v) for v in one["mean_f1_ci"]["taiwan"])  # one seed: no interval


def test_report_transfer_table_shows_the_intervals(seed_report: Path) -> None:
    md = seed_report.read_text()
    row = _cells(md[md.index("## Transfer matrix"):], "| taiwan |")
    seeds = [(0.50 + 0.30 + 0.10) / 3, (0.52 + 0.31) / 2, (0.54 + 0.32) / 2]
    ci = t_interval(seeds)
    assert row[2] == f"{100 * ci.mean:.2f} ± {100 * ci.half_width:.2f}"
    assert row[4] == "50.00 ± 0.00"
