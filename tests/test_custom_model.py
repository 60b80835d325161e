"""A network given only by its config (model=custom) trains, and its checkpoint maps with `slidemap map`."""

from __future__ import annotations

import json

import pytest
import rasterio
import torch

from slidemap.cli import main
from slidemap.errors import InputError
from slidemap.mapping.checkpoint import load_checkpoint

from conftest import run_training

FPN = ("model=custom", "model.net._target_=segmentation_models_pytorch.FPN", "++model.net.encoder_name=resnet18",
       "++model.net.encoder_weights=null")


@pytest.mark.slow
def test_a_config_only_fpn_trains_and_maps(cfg_train, synthetic_root, tmp_path, capsys):
    cfg = cfg_train(*FPN, "window=64", "scenario=china", "+trainer.limit_test_batches=2")
    run = run_training(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "custom" and set(metrics["areas"]) == {"taiwan", "china", "japan", "all"}
    hp = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["model"]["net"] == {"_target_": "segmentation_models_pytorch.FPN", "encoder_name": "resnet18",
                                  "encoder_weights": None, "in_channels": 5, "classes": 1}
    model = load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert type(model.net).__name__ == "FPN" and model.window == 64

    out = tmp_path / "maps"
    code = main(["map", "--ckpt", str(run / "checkpoints" / "best.ckpt"), "--scene", str(synthetic_root / "china"),
                 "--out", str(out), "--precision", "32"])
    assert code == 0, capsys.readouterr().err
    with rasterio.open(out / "china_probability.tif") as src, rasterio.open(synthetic_root / "china" / "s2.tif") as s2:
        assert (src.crs, src.transform, src.shape) == (s2.crs, s2.transform, s2.shape)
        prob = src.read(1)
    valid = prob[prob == prob]
    assert valid.size > 0.9 * prob.size and ((valid >= 0) & (valid <= 1)).all()


def test_custom_without_a_target_is_a_one_line_error(cfg_train):
    with pytest.raises(InputError, match=r"model.net._target_: missing: give the network's class") as err:
        run_training(cfg_train("model=custom"))
    assert "\n" not in str(err.value)


def test_a_target_that_is_not_a_network_is_a_one_line_error(cfg_train):
    with pytest.raises(InputError, match="model.net: 'os.getcwd' is not a torch.nn.Module class"):
        run_training(cfg_train("model=custom", "model.net._target_=os.getcwd"))
