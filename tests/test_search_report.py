"""`slidemap report` on a search sweep: the trials and the best, the command that reruns the best over seeds next to
the default, and (once run) their comparison on the test areas with intervals. Fabricated records, no training."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from slidemap.cli import main
from slidemap.reporting.search import rerun_command, trial_config

SPACE = ["augment", "optimizer.lr"]


def search_record(sweep: Path) -> dict:
    trials = [
        {"number": 0, "state": "complete", "value": 0.61, "params": {"optimizer.lr": 0.001, "augment": "none"},
         "run_dir": "t0", "interrupted": False},
        {"number": 1, "state": "fail", "value": None, "params": {"optimizer.lr": 0.02, "augment": "d4"},
         "run_dir": "t1", "interrupted": True},
        {"number": 2, "state": "fail", "value": None, "params": {"optimizer.lr": 0.02, "augment": "d4"},
         "run_dir": "t1", "interrupted": False},
        {"number": 3, "state": "complete", "value": 0.65, "params": {"optimizer.lr": 0.003, "augment": "d4"},
         "run_dir": "t3", "interrupted": False},
    ]
    record = {"study": "slidemap", "objective": "val_f1", "direction": "maximize", "n_trials": 3, "space": SPACE,
              "fixed": {"search": "default", "model": "resunet", "+trainer.limit_train_batches": "2"},
              "trials": trials, "best": trials[3]}
    sweep.mkdir(parents=True)
    (sweep / "search.json").write_text(json.dumps(record))
    return record


def seed_run(sweep: Path, arm: str, seed: int, china: float, japan: float) -> None:
    job = sweep / "seeds" / f"resunet-64-all-+trial={arm},seed={seed}"
    job.mkdir(parents=True)
    areas = {"china": {"f1": china}, "japan": {"f1": japan}, "all": {"f1": (china + japan) / 2}}
    (job / "metrics.json").write_text(json.dumps({"seed": seed, "overrides": [f"+trial={arm}", f"seed={seed}"],
                                                  "areas": areas}))


def test_a_search_report_lists_the_trials_and_the_best_and_prints_the_rerun(tmp_path, capsys):
    sweep = tmp_path / "search"
    search_record(sweep)
    assert main(["report", str(sweep)]) == 0
    text = (sweep / "report" / "report.md").read_text()
    assert "2 of 3 trials complete, 1 failed" in text  # the interrupted trial is not counted
    assert "| 1 | interrupted (asked again) | – | d4 | 0.02 | t1 |" in text
    assert "| 3 | complete | 65.00 | d4 | 0.003 | t3 |" in text
    assert "Trial 3: validation F1 65.00 with `optimizer.lr=0.003 augment=d4`" in text
    command = rerun_command(sweep, json.loads((sweep / "search.json").read_text()))
    assert command in text and "search=" not in command
    assert f"'hydra.searchpath=[file://{sweep.resolve()}/rerun]' +trial=default,best seed=0,1,2" in command
    assert "model=resunet +trainer.limit_train_batches=2" in command
    best = yaml.safe_load((sweep / "rerun" / "trial" / "best.yaml").read_text())
    assert best == {"defaults": [{"override /augment": "d4"}], "optimizer": {"lr": 0.003}}
    assert (sweep / "rerun" / "trial" / "default.yaml").read_text().strip() == "# @package _global_"
    assert "No rerun yet" in text
    assert (sweep / "report" / "trials.csv").read_text().splitlines()[2] == "1,interrupted,,d4,0.02,t1"


def test_the_rerun_is_compared_with_the_default_on_every_test_area(tmp_path):
    sweep = tmp_path / "search"
    search_record(sweep)
    # china: best - default = 0.08, 0.10, 0.12 by seed: mean 0.10, sd 0.02, half-width t(0.975, 2) 4.303 * 0.02 /
    # sqrt(3) = 0.0497 -> 10.00 ± 4.97, above 0 (best's own F1 0.58, 0.60, 0.62 has the same spread; the default's
    # none). japan: differences -0.02, 0.0, 0.02: 0.00 ± 4.97, inconclusive.
    for seed, (d_china, d_japan) in enumerate([(0.08, -0.02), (0.10, 0.0), (0.12, 0.02)]):
        seed_run(sweep, "default", seed, 0.50, 0.40)
        seed_run(sweep, "best", seed, 0.50 + d_china, 0.40 + d_japan)
    assert main(["report", str(sweep)]) == 0
    text = (sweep / "report" / "report.md").read_text()
    assert "| china | 50.00 ± 0.00 (n=3) | 60.00 ± 4.97 (n=3) | 10.00 ± 4.97 | supported |" in text
    assert "| japan | 40.00 ± 0.00 (n=3) | 40.00 ± 4.97 (n=3) | 0.00 ± 4.97 | inconclusive |" in text
    assert text.index("| china |") < text.index("| japan |") < text.index("| all |")


def test_a_trial_config_sets_groups_by_override_and_values_by_key():
    text = trial_config({"augment": "full", "module.pos_weight": 2.5, "+trainer.gradient_clip_val": 1.0})
    assert text.startswith("# @package _global_\n")
    assert yaml.safe_load(text) == {"defaults": [{"override /augment": "full"}], "module": {"pos_weight": 2.5},
                                    "trainer": {"gradient_clip_val": 1.0}}
