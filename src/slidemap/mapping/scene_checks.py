"""Scenes a model cannot map, refused before anything is read in full or written: too small, or without a valid
pixel in some input channel (a map of nodata would say "0 landslides", which is not what the scene shows)."""

from __future__ import annotations

from slidemap.data.loading.scene import SceneStrips
from slidemap.errors import InputError


MIN_SCENE_PX = 3
"""The smallest scene side: slope (Horn's method) and the unit checks need a 3 x 3 neighbourhood; a scene below the
model's window is zero-padded by the mosaic, as the edges of any scene are."""


def check_scene_size(scene: SceneStrips) -> None:
    """Refuse a scene too small to derive its inputs from (a 1 x 1 px scene has no slope)."""
    height, width = scene.shape
    if min(height, width) < MIN_SCENE_PX:
        raise InputError(scene.folder, f"scene is {height} x {width} px: too small to map (at least "
                                       f"{MIN_SCENE_PX} x {MIN_SCENE_PX} px, the neighbourhood slope is derived from)")


def check_scene_pixels(scene: SceneStrips) -> None:
    """Refuse a scene without a valid pixel anywhere (read by strips), naming the inputs that are empty."""
    for r0 in range(0, scene.shape[0], scene.strip_rows):
        if scene.read(r0, min(scene.shape[0], r0 + scene.strip_rows)).valid.any():
            return
    empty = scene.empty_inputs()
    what = (f"no valid pixel in {', '.join(empty)}" if empty
            else "no pixel is valid in every input at once (the inputs' valid areas do not overlap)")
    raise InputError(scene.folder, f"nothing to map: {what}")
