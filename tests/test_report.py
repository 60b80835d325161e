"""`slidemap report`: a hand-built sweep folder becomes the paper's tables, the missing runs and readable figures."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slidemap.cli import main
from slidemap.data.sites.reader import read_sites
from slidemap.data.tiling.split import split_sites
from slidemap.errors import InputError
from slidemap.mapping.rasters import write_prediction
from slidemap.reporting.figures import figure_data
from slidemap.reporting.panels import FN, FP, NODATA, TN, TP, outcome_map
from slidemap.reporting.report import write_report
from slidemap.reporting.sweep import scan_sweep, sweep_axes

# F1 per (model, window, scenario) and test area (taiwan, china, japan, all pooled); precision = F1 + 0.05 and
# recall = F1 - 0.05, except unet-32-all's taiwan precision (0.95): the best P of its column, not the best F1.
F1 = {
    ("unet", 32, "all"): (0.70, 0.60, 0.50, 0.62),
    ("unet", 64, "all"): (0.72, 0.62, 0.55, 0.64),
    ("resunet", 32, "all"): (0.74, 0.58, 0.52, 0.63),
    ("resunet", 64, "all"): (0.80, 0.61, 0.57, 0.66),
    ("unet", 32, "taiwan"): (0.75, 0.30, 0.20, 0.40),
    ("resunet", 32, "taiwan"): (0.77, 0.35, 0.10, 0.41),
}
AREAS = ("taiwan", "china", "japan", "all")
# The sweep asked for model=unet,resunet window=32,64,128 scenario=all,taiwan: 12 jobs. unet-64-taiwan started
# but wrote no metrics.json; resunet-64-taiwan and every 128 px job never ran.
MISSING = {f"model={m} window={w} scenario={s}" for m in ("unet", "resunet")
           for w, s in ((64, "taiwan"), (128, "all"), (128, "taiwan"))}
MULTIRUN_YAML = """hydra:
  sweep:
    dir: multirun/x
  overrides:
    hydra:
    - hydra.mode=MULTIRUN
    task:
    - model=unet,resunet
    - window=32,64,128
    - scenario=all,taiwan
model:
  name: unet
window: 64
scenario:
  name: all
"""


INPUTS_F1 = {"post": 0.0, "prepost": 0.05, "change": 0.10}
"""What each input set adds to every F1 of ``F1`` in a sweep over several input sets."""
CHANNELS = {"post": ["B2", "B3", "B4", "B8", "slope"], "prepost": ["B2", "B3", "B4", "B8", "B2_pre", "B3_pre",
                                                                  "B4_pre", "B8_pre", "slope"],
            "change": ["B2", "B3", "B4", "B8", "dndvi", "rdndvi", "slope"]}


def _config(root: str, key: tuple[str, int, str], inputs: str = "post") -> str:
    model, window, scenario = key
    return (f"data:\n  root: {root}\n  sites: null\nmodel:\n  name: {model}\nwindow: {window}\n"
            f"scenario:\n  name: {scenario}\n" + ("" if inputs == "post" else f"inputs:\n  name: {inputs}\n"))


def make_sweep(folder: Path, data_root: str, sites: dict | None = None, inputs: Sequence[str] = ("post",)) -> Path:
    """A sweep folder as Hydra and run.py leave it; with ``sites``, perfect-but-for-a-stripe prediction maps.

    Each input set's runs are named as run_name names them (``-<inputs>`` after the scenario, none for post) and
    score ``F1`` plus ``INPUTS_F1[inputs]``; post runs have no ``inputs`` key, as runs from before the input sets.
    """
    folder.mkdir(parents=True)
    overrides = "" if tuple(inputs) == ("post",) else f"    - inputs={','.join(inputs)}\n"
    (folder / "multirun.yaml").write_text(MULTIRUN_YAML.replace("    - scenario=all,taiwan\n",
                                                                 "    - scenario=all,taiwan\n" + overrides))
    splits = split_sites(sites) if sites else {}
    for (key, f1s), inputs_set in [(item, i) for i in inputs for item in F1.items()]:
        job = folder / ("-".join(map(str, key)) + ("" if inputs_set == "post" else f"-{inputs_set}"))
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(_config(data_root, key, inputs_set))
        areas = {a: {"precision": f + 0.05, "recall": f - 0.05, "f1": f, "iou": f / (2 - f), "tp": 1, "fp": 2, "fn": 3}
                 for a, f in zip(AREAS, (f + INPUTS_F1[inputs_set] for f in f1s))}
        if key == ("unet", 32, "all"):
            areas["taiwan"]["precision"] = 0.95
        model, window, scenario = key
        record = {"model": model, "window": window, "scenario": scenario, "seed": 0, "epochs": 7, "wall_time_s": 60.0,
                  "train_sites": ["taiwan"] if scenario == "taiwan" else ["taiwan", "china", "japan"], "areas": areas}
        if inputs_set != "post":
            record.update(inputs=inputs_set, channels=CHANNELS[inputs_set])
        (job / "metrics.json").write_text(json.dumps(record))
        for name, site in (sites or {}).items():
            block = splits[name].test
            rows, cols = block.slices
            prob = site.label[rows, cols].astype(np.float32)
            prob[:, :4] = 1.0 - prob[:, :4]  # a wrong stripe: FP and FN to see
            write_prediction(job / "predictions", site, block, prob)
    broken = folder / "unet-64-taiwan" / ".hydra"
    broken.mkdir(parents=True)
    (broken / "config.yaml").write_text(_config(data_root, ("unet", 64, "taiwan")))
    return folder


@pytest.fixture(scope="module")
def report(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sites = read_sites(synthetic_root)
    sweep = make_sweep(tmp_path_factory.mktemp("report") / "sweep", str(synthetic_root), sites)
    return write_report(sweep)


def _row(md: str, section: str, model: str, window: int) -> list[str]:
    """The cells of one model x window row of a scenario table."""
    part = md.split(f"### Scenario {section}:", 1)[1].split("###", 1)[0]
    line = next(x for x in part.splitlines() if x.startswith(f"| {model} | {window} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_tables_hold_the_values_and_mark_no_single_run_best(report: Path) -> None:
    """One seed per cell: the values alone (no interval), and no best marked (a single run's maximum is no evidence;
    before the seed statistics these cells were bold)."""
    md = report.read_text()
    head = ["model", "window", "epochs"] + [f"{a} {m}" for a in AREAS for m in ("P", "R", "F1")]
    table = md.split("### Scenario all:", 1)[1]
    assert "| " + " | ".join(head) + " |" in table
    unet32 = _row(md, "all", "unet", 32)
    resunet64 = _row(md, "all", "resunet", 64)
    # taiwan: unet-32 has the best precision (95 %), resunet-64 the best recall (75 %) and F1 (80 %)
    assert unet32[3:6] == ["95.00", "65.00", "70.00"]
    assert resunet64[3:6] == ["85.00", "75.00", "80.00"]
    assert _row(md, "all", "unet", 64)[6:9] == ["67.00", "57.00", "62.00"]  # china
    assert _row(md, "taiwan", "resunet", 32)[3:6] == ["82.00", "72.00", "77.00"]
    assert _row(md, "taiwan", "unet", 32)[9:12] == ["25.00", "15.00", "20.00"]  # japan
    results = md.split("## Results per scenario", 1)[1].split("\n## ", 1)[0]
    assert "**" not in results.split("###", 1)[1] and "±" not in results
    assert "Every cell is a single run (seed 0): no interval can be given, so no value is marked best." in results
    assert "| *rule baseline (NDVI)* | – | – | *" in table and "(paper Table 4)" in md and "(paper Table 5)" in md
    assert "## Input sets" not in md  # one input set: the paper's tables and nothing more


def test_runs_csv_has_one_row_per_run_and_area(report: Path) -> None:
    rows = list(csv.DictReader((report.parent / "runs.csv").open()))
    assert len(rows) == len(F1) * len(AREAS)
    row = next(r for r in rows if (r["model"], r["window"], r["scenario"], r["area"]) == ("resunet", "64", "all",
                                                                                          "china"))
    assert float(row["f1"]) == pytest.approx(0.61)
    assert row["run_dir"] == "resunet-64-all"
    assert {r["inputs"] for r in rows} == {"post"}  # runs from before the input sets used the post-event bands


def test_missing_runs_are_listed(report: Path, tmp_path: Path, synthetic_root: Path) -> None:
    md = report.read_text()
    section = md.split("## Missing runs", 1)[1].split("\n## ", 1)[0]
    listed = {line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| model=")}
    assert listed == MISSING
    assert "| model=unet window=64 scenario=taiwan | incomplete: no metrics.json" in section
    assert "| model=resunet window=64 scenario=taiwan | absent" in section
    assert "6 complete run(s)** in 6 of 12 expected cell(s)" in md
    sweep = scan_sweep(report.parent.parent, progress=False)
    assert {name for name, _ in sweep.missing()} == MISSING


def test_sweep_axes_read_the_overrides(tmp_path: Path) -> None:
    path = tmp_path / "multirun.yaml"
    path.write_text(MULTIRUN_YAML.replace("- scenario=all,taiwan", "- seed=1"))
    assert sweep_axes(path) == {"model": ["unet", "resunet"], "window": [32, 64, 128], "scenario": ["all"],
                                "inputs": ["post"], "seed": [1]}
    path.write_text(MULTIRUN_YAML.replace("window=32,64,128", "window=choice(32, 64)"))
    assert sweep_axes(path)["window"] == [32, 64]
    path.write_text(MULTIRUN_YAML.replace("scenario=all,taiwan", "inputs=post,prepost,change"))
    assert sweep_axes(path)["inputs"] == ["post", "prepost", "change"]
    path.write_text(MULTIRUN_YAML + "inputs:\n  name: change\n")  # not swept: the composed config's input set
    assert sweep_axes(path)["inputs"] == ["change"]


def test_figure_numbers_are_the_hand_computed_means() -> None:
    runs = [{"model": m, "window": w, "scenario": s, "areas": {a: {"f1": f} for a, f in zip(AREAS, f1s)}}
            for (m, w, s), f1s in F1.items()]
    data = figure_data(runs)
    fig10 = data["scenario_model"]  # mean over taiwan, china, japan (pooled 'all' left out) and windows
    assert fig10["all"]["unet"] == pytest.approx((0.70 + 0.60 + 0.50 + 0.72 + 0.62 + 0.55) / 6)
    assert fig10["all"]["resunet"] == pytest.approx((0.74 + 0.58 + 0.52 + 0.80 + 0.61 + 0.57) / 6)
    assert fig10["taiwan"]["unet"] == pytest.approx((0.75 + 0.30 + 0.20) / 3)
    assert list(fig10) == ["all", "taiwan"] and list(fig10["all"]) == ["unet", "resunet"]
    fig11 = data["window_scenario"]
    assert fig11["unet"]["all"][32] == pytest.approx(0.60)
    assert fig11["unet"]["all"][64] == pytest.approx((0.72 + 0.62 + 0.55) / 3)
    assert fig11["resunet"]["taiwan"][32] == pytest.approx((0.77 + 0.35 + 0.10) / 3)
    assert math.isnan(fig11["unet"]["taiwan"][64])
    t = data["transfer"]
    assert t["scenarios"] == ["all", "taiwan"] and t["areas"] == list(AREAS)
    assert t["f1"][0][0] == pytest.approx((0.70 + 0.72 + 0.74 + 0.80) / 4)
    assert t["f1"][1][1] == pytest.approx((0.30 + 0.35) / 2)
    assert t["f1"][0][3] == pytest.approx((0.62 + 0.64 + 0.63 + 0.66) / 4)


def test_figures_are_readable_pngs(report: Path) -> None:
    out = report.parent
    data = json.loads((out / "figures.json").read_text())
    assert data["scenario_model"]["taiwan"]["resunet"] == pytest.approx((0.77 + 0.35 + 0.10) / 3)
    names = ["fig10_mean_f1_scenario_model", "fig11_mean_f1_window_scenario", "transfer_matrix",
             "predictions_taiwan", "predictions_china", "predictions_japan"]
    for name in names:
        path = out / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            width, height = image.size
        assert 500 <= width <= 5000 and 300 <= height <= 5000, (name, image.size)
        assert f"]({name}.png)" in report.read_text()
    assert not list(out.parent.glob(".report.*"))  # the temporary folder is gone


def test_outcome_map_by_hand() -> None:
    binary = np.array([[1, 1, 0], [0, 255, 1]], np.uint8)
    label = np.array([[1, 0, 1], [0, 1, 1]], np.uint8)
    valid = np.array([[True, True, True], [True, True, False]])
    assert outcome_map(binary, label, valid).tolist() == [[TP, FP, FN], [TN, NODATA, NODATA]]


def test_missing_data_root_is_said_not_fatal(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep", str(tmp_path / "gone"))
    md = write_report(sweep, tmp_path / "out").read_text()
    assert "## Rule baseline" in md and "Not computed: cannot read the sites" in md
    assert "*rule baseline (" not in md
    assert (tmp_path / "out" / "transfer_matrix.png").exists()
    assert not list((tmp_path / "out").glob("predictions_*.png"))


def test_report_folder_never_replaces_runs_or_other_files(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep", str(tmp_path / "gone"))
    with pytest.raises(InputError, match="would hold the sweep's runs"):
        write_report(sweep, sweep)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not an earlier report"):
        write_report(sweep / "unet-32-all" / "..", other)
    assert (other / "keep.txt").read_text() == "mine"
    first = write_report(sweep).read_text()
    assert write_report(sweep).read_text().split("\n", 3)[3] == first.split("\n", 3)[3]  # a report replaces one


def test_tables_and_figures_go_to_an_active_wandb_run(tmp_path: Path, fake_wandb: dict) -> None:
    logged = fake_wandb
    sweep = make_sweep(tmp_path / "sweep", str(tmp_path / "gone"))
    write_report(sweep, tmp_path / "out")
    assert logged["report/runs"][0] == "table" and len(logged["report/runs"][2]) == len(F1) * len(AREAS)
    assert logged["report/scenario_all"][1][:2] == ["model", "window"]
    assert len(logged["report/missing"][2]) == len(MISSING)
    kind, path = logged["report/transfer_matrix"]
    assert kind == "image" and path == tmp_path / "out" / "transfer_matrix.png" and path.exists()


def test_no_complete_run_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no complete run"):
        write_report(tmp_path)
    job = tmp_path / "unet-64-all" / ".hydra"
    job.mkdir(parents=True)
    (job / "config.yaml").write_text(_config("x", ("unet", 64, "all")))
    with pytest.raises(InputError, match="among 1 job"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert not (tmp_path / "report").exists()


def test_a_sweep_mixing_input_sets_keys_its_runs_by_input_set(tmp_path: Path) -> None:
    for inputs in ("post", "change"):
        job = tmp_path / f"unet-64-all{'' if inputs == 'post' else '-' + inputs}"
        job.mkdir()
        f1 = 0.5 if inputs == "post" else 0.7
        areas = {a: {"precision": f1, "recall": f1, "f1": f1, "iou": 0.3, "tp": 1, "fp": 1, "fn": 1} for a in AREAS}
        (job / "metrics.json").write_text(json.dumps({"model": "unet", "window": 64, "scenario": "all",
                                                       "inputs": inputs, "areas": areas}))
    sweep = scan_sweep(tmp_path, progress=False)
    assert [r["inputs"] for r in sweep.runs] == ["post", "change"] and sweep.axes["inputs"] == ["post", "change"]
    assert sweep.missing() == []
    md = write_report(tmp_path).read_text()
    assert "| unet | 64 | post |  | 50.00 | 50.00 | 50.00 |" in md  # no epochs recorded
    assert "| unet | 64 | change |  | 70.00 | 70.00 | 70.00 |" in md  # one run each: nothing marked best
