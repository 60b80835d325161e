"""Refuse a scene whose inputs cannot be in the units the checkpoint was trained in; warn when merely unusual.

A model fed digital numbers instead of reflectance, a slope in radians or swapped bands still produces a map, and
nothing in it says it is wrong (a Landslide4Sense model mapping reflectance scored F1 0.10 instead of 0.69). The
checkpoint records each channel's unit and training distribution (:class:`~slidemap.data.sites.units.Distribution`);
:func:`check_units` compares a sample of the scene's valid pixels with it before anything is mapped.

Two kinds of verdict, with thresholds chosen so that real scene-to-scene differences (a model trained on one of the
synthetic sites mapping another: DEM medians 80 m vs 2300 m, a median more than 9 training standard deviations
away) only warn, and units errors, which move values by a factor of 57 (radians), 1000 (km) or 10000 (digital
numbers), always refuse:

- **cannot be the same units** (InputError naming the channel; the same tests the other way round catch a
  checkpoint trained on other units, such as Landslide4Sense's stored values): a value no channel of that unit can take
  (reflectance with a median above 2, slope above 90 degrees, elevation above 9000 m), a slope that never exceeds
  pi/2 or an elevation that never exceeds 9 where the training data's p90 is 10 times larger (radians,
  kilometres), or two channels of one unit each matching the other's training distribution far better than its own
  (a band order swapped: B4 <-> B8 turns vegetation's bright NIR into the red channel);
- **far** (a log warning): a channel's median more than :data:`FAR_Z` training standard deviations away.
"""

from __future__ import annotations

from typing import Any

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np

from slidemap.data.loading.scene import SceneStrips
from slidemap.data.sites.site import Site
from slidemap.data.sites.units import (BRIGHTNESS, DEGREES, METRES, REFLECTANCE, Distribution, is_optical,
                                 sample_distribution, units_of)
from slidemap.data.tiling.split import Block
from slidemap.errors import InputError
from slidemap.mapping.checkpoint import TrainedModel
from slidemap.mapping.scene_checks import check_scene_pixels, check_scene_size

log = logging.getLogger(__name__)

REFLECTANCE_MAX_MEDIAN = 2.0
"""Surface reflectance lies in about [0, 1.2] (snow, clouds); a median above 2 is digital numbers (x 10000)."""
SLOPE_MAX_DEGREES = 90.0
ELEVATION_MAX_M = 9000.0
"""Above Everest's 8849 m: not metres."""
TYPICAL_RATIO = 10.0
"""How much larger the training data's p90 must be than the scene's p99 to call a radians slope / km DEM (the
unit factors are 57 and 1000; the same ground gives p90 / p99 near 1, the synthetic sites at most 3.4)."""
SWAP_MISFIT = 2.0
"""Two channels must sit on average this far (mean |quantile gap| / training std) from their own training data ...
(between the synthetic sites, unswapped: at most 2.2 per channel, 4.4 a pair, but then no better fit swapped)"""
SWAP_RATIO = 2.5
"""... and fit each other's this many times better, to be called swapped (synthetic sites: unswapped pairs at most
1.5, swapped pairs at least 3.4)."""
SWAP_QUANTILES = (10, 50, 90)
FAR_Z = 3.0
"""|scene median - training median| / training std above which a channel is reported as far from training."""

SCENE_STRIPS = 16
"""Strips of :data:`STRIP_ROWS` rows spread over a scene: its statistics without reading all of it."""
STRIP_ROWS = 64


def scene_distribution(scene: SceneStrips, channels: Sequence[str]) -> Distribution | None:
    """The channels' distribution over :data:`SCENE_STRIPS` evenly spaced strips (the whole of a small scene)."""
    height = scene.shape[0]
    if height <= SCENE_STRIPS * STRIP_ROWS:
        rows = [(r, min(height, r + STRIP_ROWS)) for r in range(0, height, STRIP_ROWS)]
    else:
        rows = [(int(r), int(r) + STRIP_ROWS) for r in np.linspace(0, height - STRIP_ROWS, SCENE_STRIPS).round()]

    def pieces() -> Iterator[tuple[Iterator[np.ndarray], np.ndarray]]:
        for r0, r1 in rows:
            strip = scene.read(r0, r1)
            yield (strip.channel(c) for c in channels), strip.valid

    return sample_distribution(tuple(channels), pieces())


def area_distribution(site: Site, block: Block | None, channels: Sequence[str]) -> Distribution | None:
    """The channels' distribution over ``block`` of an in-memory site (all of it without a block)."""
    rows, cols = block.slices if block is not None else (slice(None), slice(None))
    return sample_distribution(tuple(channels), [((site.channel(c)[rows, cols] for c in channels),
                                                  site.valid[rows, cols])])


def _unit_problem(unit: str, data: Distribution, reference: Distribution, k: int,
                  other: str = "training") -> tuple[str, str] | None:
    """Why channel ``k`` of ``data`` cannot be in ``unit`` if ``reference`` (the ``other``) was, and a hint for a
    scene; None when it can."""
    median, p99 = data.percentile(k, 50), data.percentile(k, 99)
    typical, high = reference.percentile(k, 50), reference.percentile(k, 90)
    if unit in (REFLECTANCE, BRIGHTNESS):  # both lie in 0-1
        if median > REFLECTANCE_MAX_MEDIAN:
            return (f"median {median:.4g} is not reflectance ({other} median {typical:.4g}): digital numbers?",
                    " (reflectance x 10000: give the product's scale, e.g. site.yaml 'scale: 0.0001')")
        if typical > 0 and abs(p99) * 100 < typical:
            return (f"p99 {p99:.3g} is over 100x below the {other} median {typical:.4g}: reflectance scaled twice?",
                    " (check site.yaml 'scale')")
    elif unit == DEGREES:
        if p99 > SLOPE_MAX_DEGREES + 0.5:
            return f"p99 {p99:.4g} is above 90: not a slope in degrees (percent?)", ""
        if p99 <= math.pi / 2 * 1.01 and high > TYPICAL_RATIO * max(p99, 1e-9):
            return (f"p99 {p99:.3g} (<= pi/2) while the {other} p90 is {high:.3g}: radians?",
                    " (or a DEM not in metres: slope is derived from dem.tif)")
    elif unit == METRES:
        if p99 > ELEVATION_MAX_M:
            return f"p99 {p99:.5g} is above {ELEVATION_MAX_M:.0f} m: not metres (feet? decimetres?)", ""
        if p99 < ELEVATION_MAX_M / 1000 and high > TYPICAL_RATIO * max(p99, 1e-9):
            return f"p99 {p99:.3g} while the {other} p90 is {high:.4g}: kilometres?", " (dem.tif must hold metres)"
    return None


def _misfit(scene: Distribution, i: int, trained: Distribution, j: int) -> float:
    """How far scene channel ``i`` lies from training channel ``j``: mean |quantile gap| in training std units."""
    gaps = [abs(scene.percentile(i, q) - trained.percentile(j, q)) for q in SWAP_QUANTILES]
    return float(np.mean(gaps) / max(float(trained.std[j]), 1e-6))


def _swapped(channels: tuple[str, ...], scene: Distribution, trained: Distribution) -> tuple[int, int] | None:
    """The pair of reflectance channels that fit each other's training distribution best compared with their own,
    when that is far better; None when no pair does."""
    best, pair = SWAP_RATIO, None
    bands = [k for k, c in enumerate(channels) if is_optical(c)]
    for i in bands:
        for j in (j for j in bands if j > i):
            own = _misfit(scene, i, trained, i) + _misfit(scene, j, trained, j)
            other = _misfit(scene, i, trained, j) + _misfit(scene, j, trained, i)
            if own > 2 * SWAP_MISFIT and own > best * other:
                best, pair = own / max(other, 1e-9), (i, j)
    return pair


def check_units(model: TrainedModel, scene: Distribution | None, source: object,
                optical_unit: str = REFLECTANCE) -> list[str]:
    """Refuse (InputError on ``source``) a scene that cannot be in the checkpoint's units; warn when far.

    ``optical_unit`` is what the scene's bands hold (its site.yaml ``units``): a model trained on reflectance
    cannot map brightness, nor the other way round.

    Returns the warnings logged (one per far channel). Checkpoints written before units were recorded are not
    checked (a warning says so); neither is a scene without a valid pixel.
    """
    channels = model.channels
    trained = model.distribution
    if trained is None or model.units is None:
        log.warning("%s records no channel units or training distribution (written by an older slidemap): the "
                    "units guard is skipped for %s; retrain to have scenes checked", model.path, source)
        return []
    now = units_of(channels, optical_unit)
    optical = [f"{c} ({u})" for c, u, n in zip(channels, model.units, now) if u != n and is_optical(c)]
    if optical:
        raise InputError(source, f"holds bands in {optical_unit} but the model was trained on "
                                 f"{', '.join(optical)}: map scenes in the units it was trained on (site.yaml 'units')")
    changed = [f"{c} ({u}, now {n})" for c, u, n in zip(channels, model.units, now) if u != n]
    if changed:
        raise InputError(model.path, f"trained on channels in other units than slidemap reads: {', '.join(changed)}; "
                                     "retrain with this version")
    if scene is None:
        log.warning("%s: no valid pixel to check units on", source)
        return []
    problems = [f"{c}: {why[0]}{why[1]}" for k, c in enumerate(channels)
                if (why := _unit_problem(now[k], scene, trained, k))]
    if problems:
        raise InputError(source, f"input cannot be in the checkpoint's units: {'; '.join(problems)}")
    stale = [f"{c}: {why[0]}" for k, c in enumerate(channels)
             if (why := _unit_problem(now[k], trained, scene, k, other="scene"))]
    if stale:  # e.g. Landslide4Sense's stored values, before slidemap converted them (slope ~0.7, never above 2)
        raise InputError(model.path, f"was trained on inputs in other units than {source} holds: "
                                     f"{'; '.join(stale)}; retrain it with this version")
    pair = _swapped(channels, scene, trained)
    if pair:
        a, b = (channels[k] for k in pair)
        i, j = pair
        raise InputError(source, f"channels {a} and {b} look swapped: scene {a} median {scene.percentile(i, 50):.3g} "
                                 f"and {b} median {scene.percentile(j, 50):.3g}, but the model was trained on {a} "
                                 f"{trained.percentile(i, 50):.3g} and {b} {trained.percentile(j, 50):.3g}; check "
                                 "the band order (site.yaml 'bands' or the band descriptions)")
    warnings = []
    for k, c in enumerate(channels):
        z = (scene.percentile(k, 50) - trained.percentile(k, 50)) / max(float(trained.std[k]), 1e-6)
        if abs(z) > FAR_Z:
            warnings.append(f"{c} median {scene.percentile(k, 50):.4g} vs training {trained.percentile(k, 50):.4g} "
                            f"({z:+.1f} sd)")
    if warnings:
        log.warning("%s is far from the training data: %s; expect lower accuracy", source, "; ".join(warnings))
    return warnings


def members(model: Any) -> list[TrainedModel]:
    """The checkpoints behind a model: itself, or each member of an ensemble (each records its own units)."""
    return list(getattr(model, "models", [model]))


def check_scene(model: Any, scene: SceneStrips) -> list[str]:
    """:func:`check_units` of each checkpoint (one, or an ensemble's members) on one sample of a whole scene read
    by strips (bounded memory)."""
    check_scene_size(scene)
    sample = scene_distribution(scene, model.channels)
    if sample is None:  # no valid pixel in the sampled strips: is there one anywhere?
        check_scene_pixels(scene)
    unit = str(scene.meta.get("units") or REFLECTANCE)
    return [w for m in members(model) for w in check_units(m, sample, scene.folder, unit)]


def check_areas(model: Any, areas: dict[str, tuple[Site, Block | None]]) -> list[str]:
    """:func:`check_units` of each checkpoint (one, or an ensemble's members) on each named area (a site and its
    block), before any of them is mapped."""
    warnings = []
    for name, (site, block) in areas.items():
        source = f"{site.meta.get('path', name)} ({'test area' if block is not None else 'whole site'})"
        sample = area_distribution(site, block, model.channels)
        if sample is None:
            raise InputError(source, "nothing to map: no valid pixel (every pixel is nodata in some input channel)")
        warnings += [w for m in members(model) for w in check_units(m, sample, source, site.optical_unit)]
    return warnings
