"""Damaged and odd files in a patch dataset as published (found by an independent probe): a truncated PNG image or
mask is refused naming the file, an image with another band count is named (not the others), and the files
Windows leaves in folders are not patches."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from slidemap.cli import main

REAL = Path(__file__).parent / "data" / "real"


def copy_real(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(REAL / name, root)
    return root


def problems(capsys, root: Path) -> list[str]:
    assert main(["dataset", str(root)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return [line[4:] for line in captured.out.splitlines() if line.startswith("#   ")]


@pytest.mark.parametrize("folder", ["img", "mask"])
def test_a_truncated_png_is_refused_naming_the_file(tmp_path, capsys, folder):
    root = copy_real(tmp_path, "nepal_rgb_colour_masks")
    path = root / folder / "10013.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # GDAL would decode the first half and fill the rest with zeros
    assert problems(capsys, root) == [f"{path}: cannot read: the PNG file is truncated ({len(data) // 2} bytes, no "
                                      "IEND chunk at its end: download or copy it again)"]


def test_bytes_after_the_end_of_a_png_are_tolerated_and_windows_files_ignored(tmp_path, capsys):
    root = copy_real(tmp_path, "nepal_rgb_colour_masks")
    with open(root / "img" / "10013.png", "ab") as f:
        f.write(b"appended by some tool")
    (root / "mask" / "Thumbs.db").write_bytes(b"\x00" * 64)
    (root / "img" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    assert main(["dataset", str(root)]) == 0, capsys.readouterr().out[-2000:]


def test_a_greyscale_image_among_rgb_ones_is_named(tmp_path, capsys):
    root = copy_real(tmp_path, "nepal_rgb_colour_masks")
    path = root / "img" / "10138.png"
    Image.open(path).convert("L").save(path)
    assert problems(capsys, root) == [f"{path}: has 1 channel(s); {root / 'dataset.yaml'} lists 3 (red, green, blue)"]


def test_the_odd_image_is_named_not_the_others(tmp_path, capsys):
    root = copy_real(tmp_path, "bangladesh_s2_arcgis")  # channels not inferred: checked against most images
    images = sorted((root / "images").glob("*.tif"))
    with rasterio.open(images[0]) as src:
        profile, data = src.profile, src.read()
    profile.update(count=3)
    with rasterio.open(images[0], "w", **profile) as dst:
        dst.write(data[:3])
    with rasterio.open(images[1]) as src:
        profile, data = src.profile, src.read()
    profile.update(height=profile["height"] + 6)
    with rasterio.open(images[1], "w", **profile) as dst:
        dst.write(np.pad(data, ((0, 0), (0, 6), (0, 0))))
    n = len(images)
    assert [p for p in problems(capsys, root) if p.startswith(str(root))] == [f"{images[0]}: has 3 band(s); {n - 1} of the {n} images have 4",
                                      f"{images[1]}: is 262 x 256 px; {n - 1} of the {n} images are 256 x 256 px"]


def test_a_rare_colour_that_is_no_edge_blend_is_left_to_the_user(tmp_path, capsys):
    root = copy_real(tmp_path, "sichuan_aerial_colour_masks")
    mask = sorted((root / "mask").glob("*.png"))[0]
    pixels = np.array(Image.open(mask).convert("RGB"))
    pixels[:50, :50] = (0, 255, 0)  # a green block: a class of its own, not a blend of black and magenta
    Image.fromarray(pixels).save(mask)
    assert main(["dataset", str(root)]) == 2
    out = capsys.readouterr().out
    assert "# unlabelled: other  # GUESS: 1 rare colour(s) that are no blend of background and landslide: " \
           "[0, 255, 0] (2500 px)" in out
    assert "#   labels.unlabelled" in out  # listed among the keys to set: nothing is dropped silently
