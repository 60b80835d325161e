"""Without onnxruntime (an optional dependency, ``slidemap[onnx]``), the ONNX commands say how to install it in one
line; nothing else needs it."""

from __future__ import annotations

import sys

import pytest

import fake_sites as fs
from checkpoints import save_checkpoint, unet_config
from slidemap.cli import main


@pytest.mark.parametrize("module", ["onnxruntime", "onnx"])
def test_export_without_onnx_says_how_to_install_it(capsys, monkeypatch, tmp_path, module):
    ckpt = save_checkpoint(tmp_path / "a.ckpt", unet_config(5, 4))
    monkeypatch.setitem(sys.modules, module, None)  # import onnx(runtime) raises ImportError
    assert main(["export", str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == f"slidemap export: error: needs {module}, which is not " \
                                        "installed: pip install 'slidemap[onnx]'"
    assert not (tmp_path / "m.onnx").exists()


def test_map_with_onnxruntime_missing_says_how_to_install_it(capsys, monkeypatch, tmp_path):
    scene = fs.make_site(tmp_path / "scene", labels=None)
    (tmp_path / "m.onnx").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code = main(["map", "--engine", "onnxruntime", "--model", str(tmp_path / "m.onnx"), "--scene", str(scene),
                 "--out", str(tmp_path / "maps")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip() == "slidemap map: error: --engine onnxruntime: needs onnxruntime, which is not installed: " \
                          "pip install 'slidemap[onnx]'"
    assert not (tmp_path / "maps").exists()
