"""Lightning DDP on CPU (2 gloo processes) under Hydra: one run folder, exact pooled counts, sweeps work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_training import tiny, train

pytestmark = pytest.mark.slow

COUNTS = ("tp", "fp", "fn")


def _counts(run: Path) -> dict[str, dict[str, int]]:
    areas = json.loads((run / "metrics.json").read_text())["areas"]
    return {area: {k: m[k] for k in COUNTS} for area, m in areas.items()}


def test_ddp_scores_a_checkpoint_exactly_like_one_process(synthetic_root, tmp_path):
    base = tiny(synthetic_root, "logger=none", "model.net.base_filters=8", "trainer.max_epochs=1",
                "trainer.precision=32-true")
    trained = tmp_path / "trained"
    done = train([*base, f"hydra.run.dir={trained}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = trained / "checkpoints" / "best.ckpt"
    # eval_batch_size=1: each patch goes through the network alone in both runs, so only the sharding differs
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    for out, trainer in ((single, "default"), (ddp, "ddp")):
        done = train([*base, f"trainer={trainer}", f"test_ckpt={ckpt}", "data.eval_batch_size=1",
                      f"hydra.run.dir={out}"], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((ddp / "metrics.json").read_text())["processes"] == 2
    assert _counts(ddp) == _counts(single)
    assert _counts(single) == _counts(trained)  # the fixed checkpoint is the trained run's best
    # every valid test pixel counted once: TP + FN is the number of landslide pixels in the test areas
    from slidemap.data.sites.reader import read_sites
    from slidemap.data.tiling.split import split_sites

    sites = read_sites(synthetic_root)
    splits = split_sites(sites)
    positives = sum(int((s.label[splits[n].test.slices] == 1)[s.valid[splits[n].test.slices]].sum())
                    for n, s in sites.items())
    assert _counts(ddp)["all"]["tp"] + _counts(ddp)["all"]["fn"] == positives


def test_ddp_training_sweep_keeps_one_folder_per_run(synthetic_root, tmp_path):
    sweep = tmp_path / "sweep"
    done = train(["-m", "trainer=ddp", "scenario=china,japan", "window=32", f"hydra.sweep.dir={sweep}",
                  *tiny(synthetic_root, "logger=none", "model.net.base_filters=8", "trainer.max_epochs=1")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["unet-32-china", "unet-32-japan"]
    for job in ("unet-32-china", "unet-32-japan"):
        run = sweep / job
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["processes"] == 2 and metrics["scenario"] == job.rsplit("-", 1)[1]
        assert (run / "checkpoints" / "best.ckpt").is_file()
        assert sorted(p.name for p in run.glob("*.log")) == ["train.log", "train_rank1.log"]
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()  # no stray run folders
