"""Models you can hand over (issue 27, items 1-3): a card in every checkpoint, provenance in every map, and no
synthetic-trained model on a real scene without the flag. Card fields are checked against the run's own files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import torch

import fake_sites as fs
import l4s_fixtures as l4s
import patch_fixtures as px
from checkpoints import save_checkpoint
from conftest import TINY_TRAINING, TINY_UNET, compose_config, run_training
from slidemap.cli import main
from slidemap.mapping.model_card import file_fingerprint
from slidemap.training.card import CARD_FILE, files_fingerprint


def _train(tmp_path: Path, *overrides: str) -> tuple[Path, dict, dict]:
    run = run_training(compose_config("train", tmp_path / "run", ["window=32", *TINY_TRAINING, TINY_UNET, *overrides]))
    metrics = json.loads((run / "metrics.json").read_text())
    card = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)["hyper_parameters"]["card"]
    return run, metrics, card


@pytest.fixture(scope="module")
def synthetic_run(synthetic_root, tmp_path_factory) -> tuple[Path, dict, dict]:
    return _train(tmp_path_factory.mktemp("card"), f"data.root={synthetic_root}", "scenario=china")


def test_a_sweep_runs_card_holds_its_own_facts(synthetic_run, synthetic_root):
    run, metrics, card = synthetic_run
    assert card["name"] == f"{metrics['cell']} seed 0"
    assert card["network"]["class"] == "slidemap.models.UNet" and card["network"]["arguments"]["base_filters"] == 8
    assert card["inputs"]["window"] == 32
    assert [c["name"] for c in card["inputs"]["channels"]] == metrics["channels"]
    assert [c["unit"] for c in card["inputs"]["channels"]] == ["reflectance"] * 4 + ["degrees"]
    data = card["data"]
    assert (data["kind"], data["train_sites"], data["root"]) == ("synthetic", ["china"], str(synthetic_root.resolve()))
    china = sorted(p for p in (synthetic_root / "china").rglob("*") if p.is_file())
    assert (data["fingerprint"], data["files"]) == files_fingerprint(china, synthetic_root.resolve())
    assert card["training"]["loss"] == "bce" and card["training"]["lr"] == 1e-3
    assert card["training"]["epochs"] == metrics["epochs"] and card["training"]["stopped_by"] == metrics["stopped_by"]
    assert card["calibration"]["temperature"] == metrics["calibration"]["temperature"]
    assert card["threshold"] == 0.5
    for area, m in metrics["areas"].items():
        assert card["scores"][area] == {k: m[k] for k in ("precision", "recall", "f1", "iou", "mcc", "average_precision")}
    md = (Path(metrics["best_checkpoint"]).parent / CARD_FILE).read_text()
    assert "Kind **synthetic**" in md and f"| china | {100 * metrics['areas']['china']['precision']:.1f} |" in md
    assert metrics["model_card"] == str(Path(metrics["best_checkpoint"]).parent / CARD_FILE)


def test_a_fingerprint_changes_with_a_training_file(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 10)
    before = files_fingerprint([tmp_path / "a"], tmp_path)
    (tmp_path / "a").write_bytes(b"y" + b"x" * 9)
    assert files_fingerprint([tmp_path / "a"], tmp_path) != before


def test_slidemap_card_prints_it_and_its_json(capsys, synthetic_run):
    run, metrics, card = synthetic_run
    assert main(["card", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# Model card: {card['name']}") and "Kind **synthetic**" in out
    assert main(["card", metrics["best_checkpoint"], "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data"] == card["data"] and printed["fingerprint"] == file_fingerprint(
        Path(metrics["best_checkpoint"]))


def test_an_older_checkpoint_says_what_it_holds_and_what_is_unknown(capsys, tmp_path):
    old = save_checkpoint(tmp_path / "old.ckpt")
    assert main(["card", str(old)]) == 0
    out = capsys.readouterr().out
    assert "| blue |" in out and "Window 32 px" in out
    assert "This checkpoint has no card" in out and "## Data that trained it\n\nunknown" in out


def test_a_landslide4sense_runs_card(tmp_path):
    root = l4s.write_l4s(tmp_path / "l4s")
    _, metrics, card = _train(tmp_path, "data=landslide4sense", f"data.root={root}")
    assert card["data"]["kind"] == "landslide4sense" and card["data"]["name"] == "Landslide4Sense"
    assert card["data"]["files"] == sum(1 for p in root.rglob("*") if p.is_file())
    assert card["scores"].keys() == metrics["areas"].keys()


def test_a_patch_dataset_runs_card(tmp_path):
    root = px.write_dataset(tmp_path / "tif", "tif")
    _, metrics, card = _train(tmp_path, "data=patches", f"data.root={root}", "inputs=rgbn")
    assert card["data"]["kind"] == "patches" and card["data"]["root"] == str(root.resolve())
    assert card["data"]["train_patches"] > 0 and card["data"]["files"] == sum(1 for p in root.rglob("*") if p.is_file())
    assert [c["name"] for c in card["inputs"]["channels"]] == metrics["channels"]


def test_a_synthetic_model_is_refused_on_a_real_scene_and_tags_its_maps_when_allowed(capsys, synthetic_run,
                                                                                      tmp_path):
    run, metrics, _ = synthetic_run
    scene = fs.make_site(tmp_path / "scene")  # not written by slidemap synth
    args = ["map", "--ckpt", str(run), "--scene", str(scene), "--out", str(tmp_path / "maps")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "was trained only on the built-in synthetic sites" in err and "--allow-synthetic-model" in err
    assert not (tmp_path / "maps").exists()
    assert main([*args, "--allow-synthetic-model"]) == 0
    ckpt = Path(metrics["best_checkpoint"])
    with rasterio.open(tmp_path / "maps" / "scene_probability.tif") as src:
        tags = src.tags()
    assert tags["SLIDEMAP_TRAINING_DATA"] == "synthetic" and "not a map of the real ground" in tags["SLIDEMAP_WARNING"]
    assert tags["SLIDEMAP_CHECKPOINT_FINGERPRINTS"] == file_fingerprint(ckpt)
    assert tags["SLIDEMAP_THRESHOLD"] == "0.5" and tags["SLIDEMAP_ENSEMBLE_MEMBERS"] == "1"
    _, _, _, (keys, values) = pyogrio.raw.read(tmp_path / "maps" / "scene_landslides.gpkg", layer="provenance")
    assert dict(zip(keys, values)) == {k: v for k, v in tags.items() if k.startswith("SLIDEMAP_")}


def test_an_unknown_or_real_model_maps_any_scene_with_its_provenance(tmp_path):
    ckpt = save_checkpoint(tmp_path / "old.ckpt")  # no card: nothing says it is synthetic
    scene = fs.make_site(tmp_path / "scene")
    assert main(["map", "--ckpt", str(ckpt), "--scene", str(scene), "--out", str(tmp_path / "maps")]) == 0
    with rasterio.open(tmp_path / "maps" / "scene_binary.tif") as src:
        tags = src.tags()
    assert tags["SLIDEMAP_TRAINING_DATA"] == "unknown" and "SLIDEMAP_WARNING" not in tags
    assert np.isfinite(float(tags["SLIDEMAP_TEMPERATURES"]))
