"""Run identity: every sweep axis keeps its jobs, a finished job is skipped, a folder never mixes two runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from slidemap.errors import InputError
from slidemap.runs import MAX_SUFFIX, run_suffix
from slidemap.training.identity import RUN_FILE, claim_run_dir, run_identity

from conftest import TINY_TRAINING, TINY_UNET, constant_keys_unnamed, run_training
from test_training import train

CFG = OmegaConf.create({"model": {"name": "unet"}, "window": 64, "scenario": {"name": "china"},
                        "inputs": {"name": "post"}})


def test_suffix_of_the_overrides_outside_the_named_axes():
    assert run_suffix("") == ""
    assert run_suffix("seed=1") == "-seed=1"
    assert run_suffix("data.synthetic.seed=3,optimizer.lr=0.01") == "-data.synthetic.seed=3,optimizer.lr=0.01"
    assert run_suffix("test_ckpt=/a/b.ckpt") == "-test_ckpt=_a_b.ckpt"  # one folder, never nested ones
    long = ",".join(f"trainer.k{i}=value{i}" for i in range(40))
    cut = run_suffix(long)
    assert len(cut) == MAX_SUFFIX + 1 and cut.startswith("-trainer.k0=value0,")
    assert cut != run_suffix(long.replace("value39", "value40"))  # the hash tells apart what the cut hides


def test_identity_leaves_out_what_does_not_shape_the_result():
    one = run_identity(CFG, ["seed=1", "logger=none", "trainer.enable_progress_bar=false", "optimizer.lr=0.01"])
    assert one.overrides == ("optimizer.lr=0.01", "seed=1") and one.cell == "unet-64-china-post"
    assert run_identity(CFG, ["optimizer.lr=0.01", "seed=1", "logger=csv"]) == one


def test_a_folder_holds_one_run(tmp_path):
    first = run_identity(CFG, ["seed=1"])
    claim_run_dir(tmp_path, first)
    assert json.loads((tmp_path / RUN_FILE).read_text()) == {"overrides": ["seed=1"], "cell": "unet-64-china-post"}
    claim_run_dir(tmp_path, run_identity(CFG, ["seed=1", "logger=none"]))  # the same run: accepted
    refused = r"holds another run \(overrides \['seed=1'\]\), not this one \(\['seed=2'\]\)"
    with pytest.raises(InputError, match=refused):
        claim_run_dir(tmp_path, run_identity(CFG, ["seed=2"]))


def _folders(sweep: Path) -> list[str]:
    return sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.slow
def test_a_seed_sweep_keeps_every_seed_and_a_rerun_trains_none(synthetic_root, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0,1", "scenario=china", "window=32", f"data.root={synthetic_root}", *TINY_TRAINING, TINY_UNET,
            "+trainer.limit_test_batches=2", f"hydra.sweep.dir={sweep}"]
    done = train(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _folders(sweep) == ["unet-32-china-seed=0", "unet-32-china-seed=1"]
    records = {job: json.loads((sweep / job / "metrics.json").read_text()) for job in _folders(sweep)}
    for job, record in records.items():
        seed = int(job[-1])
        assert record["seed"] == seed and record["cell"] == "unet-32-china-post"
        assert f"seed={seed}" in record["overrides"] and "scenario=china" in record["overrides"]
        assert record["stopped_by"] in ("early_stopping", "max_epochs")
        assert (sweep / job / "checkpoints" / "best.ckpt").is_file()
        assert not (sweep / job / "checkpoints" / "last.ckpt").exists()  # resume state dropped once complete
    assert records["unet-32-china-seed=0"]["areas"] != records["unet-32-china-seed=1"]["areas"]
    stamps = {job: (sweep / job / "metrics.json").stat().st_mtime_ns for job in records}
    again = train(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {job: (sweep / job / "metrics.json").stat().st_mtime_ns for job in records} == stamps
    assert (again.stdout + again.stderr).count("is complete") == 2  # Hydra logs to stdout


@pytest.mark.slow
def test_any_axis_keeps_its_jobs_with_every_override_in_the_name(synthetic_root, tmp_path):
    """Without the test helper's shortening: the user's view, every override outside the named axes names the job."""
    sweep = tmp_path / "sweep"
    args = ["-m", "trainer.max_epochs=1,2", "trainer.min_epochs=1", "scenario=china", "window=32", TINY_UNET,
            f"data.root={synthetic_root}", "logger=none", "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1", f"hydra.sweep.dir={sweep}"]
    done = train(args, tmp_path, name_constants=True)
    assert done.returncode == 0, done.stderr[-3000:]
    common = ("+trainer.limit_test_batches=1,+trainer.limit_train_batches=2,+trainer.limit_val_batches=1,"
              "model.net.base_filters=8")
    assert _folders(sweep) == [f"unet-32-china-{common},trainer.max_epochs={e},trainer.min_epochs=1" for e in (1, 2)]
    epochs = sorted(json.loads((sweep / job / "metrics.json").read_text())["epochs"] for job in _folders(sweep))
    assert epochs == [1, 2]  # each job trained its own number of epochs


def test_an_in_process_run_records_its_identity(cfg_train, tmp_path):
    run = run_training(cfg_train("scenario=china", "+trainer.limit_test_batches=1"))
    record = json.loads((run / "metrics.json").read_text())
    assert record["cell"] == "unet-64-china-post" and "scenario=china" in record["overrides"]
    assert not [o for o in record["overrides"] if o.startswith(("logger=", "trainer.enable_progress_bar="))]
    assert record["stopped_by"] == "max_epochs"  # 2 epochs, patience 4: the cap ends it
    assert json.loads((run / RUN_FILE).read_text())["cell"] == "unet-64-china-post"
    assert constant_keys_unnamed(["-m", "seed=0,1", "trainer.max_epochs=2"]).endswith(",trainer.max_epochs]")


def test_a_run_ended_by_early_stopping_says_so(cfg_train):
    """min_delta 10 on the validation loss: no epoch after the first improves, so patience 1 stops the second.

    The "best" checkpoint is the highest validation loss here (the first epoch's): testing it restores the callbacks'
    state of that epoch, before early stopping fired, so the ending must be read right after training.
    """
    cfg = cfg_train("scenario=china", "trainer.max_epochs=6", "callbacks.early_stopping.patience=1",
                    "+callbacks.early_stopping.min_delta=10", "callbacks.model_checkpoint.mode=max",
                    "+trainer.limit_test_batches=1")
    record = json.loads((run_training(cfg) / "metrics.json").read_text())
    assert record["stopped_by"] == "early_stopping" and record["epochs"] < 6


def test_metrics_json_writes_undefined_values_as_null(tmp_path):
    import json
    import math

    from slidemap.runs import completed_run, write_metrics

    write_metrics(tmp_path, {"val_f1": float("nan"), "areas": {"all": {"f1": 0.5, "ece": float("inf")}},
                             "curve": [1.0, float("-inf")], "seed": 3})
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    record = json.loads(text, parse_constant=lambda c: math.nan)  # strict JSON: no constant to parse
    assert record == {"val_f1": None, "areas": {"all": {"f1": 0.5, "ece": None}}, "curve": [1.0, None], "seed": 3}
    assert completed_run(tmp_path) == record
