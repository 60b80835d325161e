"""A run whose stderr is not a terminal (SLURM, nohup, a redirected sweep) logs one line per epoch, no bar."""

from __future__ import annotations

import pytest
from test_training import train

from slidemap.training.epoch_log import progress_bar


@pytest.mark.slow
def test_a_redirected_run_logs_one_line_per_epoch_and_no_bar(synthetic_root, tmp_path):
    done = train([f"data.root={synthetic_root}", "logger=none", "window=32", "scenario=china", "trainer.max_epochs=2",
                  "trainer.min_epochs=2", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
                  "model.net.base_filters=8", "trainer.precision=32-true", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stdout + done.stderr
    lines = [line for line in log.splitlines() if "epoch_log" in line]
    assert [line.split(" - ", 1)[1].split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("train loss" in line and "val loss" in line and "val F1" in line for line in lines)
    assert "\r" not in log and "it/s]" not in log  # no progress bar redraws


def test_the_setting_forces_either():
    assert progress_bar(True) is True and progress_bar(False) is False
    assert progress_bar("auto") is False  # pytest's stderr is captured: not a terminal
