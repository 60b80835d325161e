"""The mosaic's tile sizes: plain constants, so the command line can show them in its help without importing
torch (``slidemap --help`` answers at once)."""

from slidemap.errors import InputError

MAP_TILE = 512
"""``slidemap map``'s (and ``slidemap region``'s) default tile: far less work per pixel than the training window's
tiles (a 64 px blend ramp, so each pixel is computed ~1.3 times instead of 4; the networks are fully convolutional
and pad any size to their stride). Measured on 2 cores: 3.0x the mosaic's Mpx/s of the 64 px tiles, F1 within 0.44
points (benchmarks/README.md, large tiles). A scene smaller than the tile gets one tile of its own size
(:func:`fit_tile`); a checkpoint trained on larger windows maps with its window."""
BLEND_MARGIN = 64
"""Pixels over which a blended tile's weight ramps up from 0 at an inner border (:func:`default_overlap`)."""
TILE_MULTIPLE = 32
"""Tiles are multiples of this (the U-Net's total stride 16, ResU-Net's 8, smp encoders' 32)."""


def check_tile(tile: object, key: str = "--tile") -> int:
    """A tile size every network takes whole: a positive multiple of :data:`TILE_MULTIPLE` (``slidemap map`` and
    ``region``'s ``--tile``, eval.py's ``tile``)."""
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < TILE_MULTIPLE or tile % TILE_MULTIPLE:
        raise InputError(key, f"must be a multiple of {TILE_MULTIPLE} px (e.g. 256, 512, 1024), got {tile!r}")
    return tile
