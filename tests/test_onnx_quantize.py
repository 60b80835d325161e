"""`slidemap export --quantize int8`: static quantisation calibrated on the training areas' valid pixels; the logits
head and what follows stay fp32; the int8 model maps close to the fp32 one and says how it was calibrated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'slidemap[onnx]')")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'slidemap[onnx]')")

from checkpoints import save_checkpoint, unet_config  # noqa: E402
from slidemap.cli import main  # noqa: E402
from slidemap.data.sites.reader import read_site  # noqa: E402
from slidemap.data.tiling.split import split_sites  # noqa: E402
from slidemap.evaluation.scoring import confusion_counts, scores  # noqa: E402
from slidemap.mapping.maps import map_area  # noqa: E402
from slidemap.mapping.onnx_engine import OnnxModel  # noqa: E402
from slidemap.mapping.onnx_quantize import fp32_tail  # noqa: E402

H = onnx.helper


def test_the_fp32_tail_runs_from_each_output_back_to_the_logits_convolution():
    nodes = [H.make_node("Conv", ["x", "w1"], ["a"], name="conv1"), H.make_node("Relu", ["a"], ["b"], name="relu"),
             H.make_node("Conv", ["b", "w2"], ["logit"], name="head"),
             H.make_node("Div", ["logit", "t"], ["c"], name="div"), H.make_node("Sigmoid", ["c"], ["p"], name="sig"),
             H.make_node("Sub", ["p", "p"], ["d"], name="sub"), H.make_node("Abs", ["d"], ["sd"], name="abs")]
    value = H.make_tensor_value_info
    graph = H.make_graph(nodes, "g", [value("x", onnx.TensorProto.FLOAT, None)],
                         [value("p", onnx.TensorProto.FLOAT, None), value("sd", onnx.TensorProto.FLOAT, None)])
    assert sorted(fp32_tail(H.make_model(graph))) == ["abs", "div", "head", "sig", "sub"]


def props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_a_checkpoint_without_a_card_needs_calibration_sites(capsys, tmp_path, synthetic_root):
    ckpt = save_checkpoint(tmp_path / "old.ckpt", unet_config(5, 4))
    assert main(["export", str(ckpt), "--out", str(tmp_path / "q.onnx"), "--quantize", "int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"slidemap export: error: {ckpt}: records no training data (no model card): give --calibration " \
                  "SITES_ROOT to calibrate the int8 model on"
    assert main(["export", str(ckpt), "--out", str(tmp_path / "q.onnx"), "--quantize", "int8", "--calibration",
                 str(synthetic_root), "--calibration-tiles", "5"]) == 0
    meta = props(tmp_path / "q.onnx")
    assert meta["slidemap.quantization"].startswith("int8 (static, QDQ")
    # window 32 -> 64 px tiles (two tile multiples at least); every site's training area, in site order
    assert meta["slidemap.calibration_data"].startswith("5 tiles of 64 px (of ")
    assert meta["slidemap.calibration_data"].endswith(f"from the training areas of china, japan, taiwan in "
                                                      f"{synthetic_root.resolve()}")


@pytest.mark.slow
def test_int8_maps_a_test_area_close_to_fp32(tiny_run, synthetic_root, tmp_path):
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    assert main(["export", str(ckpt), "--out", str(tmp_path / "fp32.onnx")]) == 0
    assert main(["export", str(ckpt), "--out", str(tmp_path / "int8.onnx"), "--quantize", "int8"]) == 0
    meta = props(tmp_path / "int8.onnx")
    card = json.loads(meta["slidemap.members"])[0]["card"]
    assert f"in {card['data']['root']}" in meta["slidemap.calibration_data"]  # the card's training sites
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 10
    producers = {o: n for n in graph.node for o in n.output}
    tail = set(fp32_tail(onnx.load(str(tmp_path / "int8.onnx"))))
    convs = [n for n in graph.node if n.op_type == "Conv"]
    heads = [n for n in convs if n.name in tail]
    assert len(heads) == 1 and heads[0].input[1] not in producers  # the head's weights: an fp32 initializer
    assert all(producers[n.input[1]].op_type == "DequantizeLinear" for n in convs if n.name not in tail)
    site = read_site(synthetic_root / "taiwan")
    block = split_sites({"taiwan": site})["taiwan"].test
    maps = {k: map_area(OnnxModel(tmp_path / f"{k}.onnx"), site, tmp_path / k, block=block, progress=False)
            for k in ("fp32", "int8")}
    valid = np.isfinite(maps["fp32"].probability)
    diff = np.abs(maps["int8"].probability - maps["fp32"].probability)[valid]
    assert diff.mean() < 0.03
    assert np.mean(maps["int8"].binary[valid] == maps["fp32"].binary[valid]) > 0.95
    label = site.label[block.slices]
    f1 = {}
    for k, m in maps.items():
        c = confusion_counts(m.binary == 1, label == 1, valid)
        f1[k] = scores(c["tp"], c["fp"], c["fn"])["f1"]
    assert abs(f1["int8"] - f1["fp32"]) < 0.05, f1
