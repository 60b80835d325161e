"""Which mask values or colours are landslide, background and unlabelled, inferred from the masks of a dataset.

``slidemap dataset`` sees every mask's histogram (:class:`~slidemap.data.patchsets.check.Scan`). The rules, in order:
an ArcGIS Classified Tiles export says 0 = unlabelled and names its classes in the .emd (a class named like
"landslide" is the landslide; classes named only "1" and "2" are a guess, said so); values {0, 1} and {0, 255} are
background/landslide; colour masks have black background and one or a few dominant colours; the many faint
colours between them that resizing blends at edges are ``unlabelled: other``. What remains a guess is written
commented out, so training stops on the key until the user sets it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from slidemap.data.patchsets.esri_export import ModelDefinition
from slidemap.data.patchsets.masks import code_colour

MINOR_SHARE = 0.05
"""A colour or value with fewer pixels than this share of the largest non-background one is an edge blend."""

BLEND_TOLERANCE = 16.0
"""How far (0-255 units) an edge blend may lie from the line between background and a landslide colour: resizing
mixes the two, so a blend lies on that line up to rounding; a colour off every such line is a class of its own."""

IGNORE = 255
"""The mask value that class-map releases (0/1 classes) use for unlabelled pixels."""

_LANDSLIDE_WORDS = ("landslide", "slide", "debris", "rockfall", "scar")
_BACKGROUND_WORDS = ("background", "non", "not", "other", "stable", "no ")


@dataclass
class Entry:
    """One key of dataset.yaml: its value (None: not known), what it was inferred from, and whether it is certain
    (uncertain keys are written commented out with the proposal)."""

    key: str
    value: object
    source: str
    certain: bool = True


def _show(code: int, colours: bool) -> list[int] | int:
    return list(code_colour(code)) if colours else code


def _share(n: int, total: int) -> str:
    return f"{100.0 * n / max(total, 1):.3g}%"


def _esri(emd: ModelDefinition, totals: Counter[int], presence: Counter[int], masks: int) -> list[Entry]:
    total = sum(totals.values())
    classes = {c.value: c for c in emd.classes}
    named = {v: c.name.lower() for v, c in classes.items()}
    slide = [v for v, n in named.items() if any(w in n for w in _LANDSLIDE_WORDS)]
    ground = [v for v, n in named.items() if v not in slide and any(w in n for w in _BACKGROUND_WORDS)]
    counts = ", ".join(f"class {v} ('{classes[v].name}') {totals.get(v, 0)} px in {presence.get(v, 0)} of "
                       f"{masks} masks" for v in sorted(classes))
    entries = [Entry("labels.unlabelled", [0], f"ArcGIS Classified Tiles: 0 = no class ({_share(totals.get(0, 0), total)}"
                                               " of mask pixels)")]
    if slide and len(slide) + len(ground) == len(classes):
        entries.insert(0, Entry("labels.landslide", slide, f"{emd.path.name} names it: {counts}"))
        entries.insert(1, Entry("labels.background", ground, f"{emd.path.name} names it"))
        return entries
    if len(classes) == 2:  # names say nothing: the class drawn in fewer tiles is the sparse one, landslides
        rare, common = sorted(classes, key=lambda v: (presence.get(v, 0), totals.get(v, 0)))
        entries.insert(0, Entry("labels.landslide", [rare], f"GUESS: {emd.path.name} names its classes only "
                                f"{', '.join(repr(c.name) for c in classes.values())}; {counts}: background was "
                                f"drawn in most tiles, landslides only where there are some; confirm", False))
        entries.insert(1, Entry("labels.background", [common], "the other class of the .emd (see labels.landslide)"))
        return entries
    entries.insert(0, Entry("labels.landslide", None, f"{emd.path.name} lists classes {counts}: say which are "
                                                      "landslide", False))
    entries.insert(1, Entry("labels.background", None, "the classes that are not landslide", False))
    return entries


def infer_labels(totals: Counter[int], presence: Counter[int], masks: int, colours: bool,
                 emd: ModelDefinition | None) -> list[Entry]:
    """The ``labels`` entries (landslide, background, unlabelled) from pixels per code over every mask
    (``totals``) and how many masks hold each code (``presence``)."""
    if emd is not None and emd.classes and not colours:
        return _esri(emd, totals, presence, masks)
    total = sum(totals.values())
    found = sorted(c for c in totals if c >= 0)
    shown = ", ".join(f"{_show(c, colours)} ({_share(totals[c], total)})" for c in
                      sorted(found, key=lambda c: -totals[c])[:6]) + (", ..." if len(found) > 6 else "")
    what = f"{'colours' if colours else 'values'} {shown}"
    if not colours and set(found) <= {0, 1}:
        return [Entry("labels.landslide", [1], f"mask values 0/1: {what}"), Entry("labels.background", [0], "")]
    if not colours and set(found) == {0, 1, IGNORE}:
        return [Entry("labels.landslide", [1], f"mask values 0/1 and {IGNORE}: {what}"),
                Entry("labels.background", [0], ""),
                Entry("labels.unlabelled", [IGNORE], f"{IGNORE} next to 0/1 classes: the usual ignore value")]
    background = 0  # black / zero
    if background not in totals:
        return [Entry("labels.landslide", None, f"mask {what}: no 0 or black background; say which are landslide",
                      False), Entry("labels.background", None, "the values or colours of background", False)]
    rest = {c: n for c, n in totals.items() if c >= 0 and c != background}
    if not rest:
        return [Entry("labels.landslide", None, f"every mask is {_show(background, colours)} only: no landslide "
                                                "pixel in any mask", False),
                Entry("labels.background", [_show(background, colours)], "the only mask value")]
    top = max(rest.values())
    main = sorted((c for c, n in rest.items() if n >= MINOR_SHARE * top), key=lambda c: -rest[c])
    minor = [c for c in rest if c not in main]
    odd = [c for c in minor if not any(is_blend(c, background, m, colours) for m in main)]
    certain = len(main) == 1
    source = f"mask {what}: {'the' if certain else 'GUESS, merged'} dominant non-{'black' if colours else 'zero'} " \
             f"{'colour' if colours else 'value'}{'s' if len(main) > 1 else ''}" + ("" if certain else "; confirm")
    entries = [Entry("labels.landslide", [_show(c, colours) for c in main], source, certain),
               Entry("labels.background", [_show(background, colours)], "black" if colours else "zero")]
    if odd:
        listed = ", ".join(f"{_show(c, colours)} ({rest[c]} px)" for c in sorted(odd, key=lambda c: -rest[c])[:5])
        entries.append(Entry("labels.unlabelled", "other", f"GUESS: {len(odd)} rare {'colour' if colours else 'value'}"
                             f"(s) that are no blend of background and landslide: {listed}; a class of their own? "
                             "list them under landslide or background, or confirm 'other' (no loss, no score)",
                             False))
    elif minor:
        pixels = sum(rest[c] for c in minor)
        entries.append(Entry("labels.unlabelled", "other", f"{len(minor)} faint {'colours' if colours else 'values'} "
                             f"({_share(pixels, total)} of mask pixels) blended at edges (masks resized): no loss, "
                             "no score"))
    return entries


def is_blend(code: int, background: int, landslide: int, colours: bool) -> bool:
    """Whether ``code`` lies between background and a landslide code, as resizing blends them at edges."""
    point, start, end = (np.array(code_colour(c) if colours else (c,), float) for c in (code, background, landslide))
    span = end - start
    t = float(np.clip(np.dot(point - start, span) / max(float(np.dot(span, span)), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(point - (start + t * span))) <= BLEND_TOLERANCE
