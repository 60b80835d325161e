"""`slidemap describe`: what a folder of sites holds, in the numbers the paper reports for its sites."""

from __future__ import annotations

from slidemap.data.sites.site import Site
from slidemap.data.tiling.split import split_sites
from slidemap.data.tiling.split import WINDOWS
from slidemap.evaluation.scoring import shown


def describe_sites(sites: dict[str, Site]) -> dict:
    """Per site: grid, CRS, landslide statistics and patch counts per window and block (the JSON contract)."""
    splits = split_sites(sites)
    out: dict = {"sites": {}}
    for name, site in sites.items():
        px_m2 = abs(site.transform.a * site.transform.e)
        rows, cols = site.shape
        valid = int(site.valid.sum())
        slide_px = int(site.label[site.valid].sum()) if site.label is not None else 0
        count = site.landslide_count or 0
        split = splits[name]
        image = site.meta.get("image", "s2.tif")
        out["sites"][name] = {
            "sensor": site.meta.get("sensor") or ("Sentinel-2" if image == "s2.tif" else "unnamed (site.yaml sensor)"),
            "image": image,
            "bands": list(site.band_names),
            "units": site.optical_unit,
            "crs": site.crs.to_string(),
            "pixel_size_m": site.pixel_size_m,
            "shape": [rows, cols],
            "extent_km": [rows * abs(site.transform.e) / 1000, cols * abs(site.transform.a) / 1000],
            "area_km2": rows * cols * px_m2 / 1e6,
            "valid_fraction": valid / (rows * cols),
            "landslide_count": count,
            "landslide_fraction": slide_px / valid if valid else 0.0,
            "landslide_area_km2": slide_px * px_m2 / 1e6,
            "mean_landslide_px": slide_px / count if count else 0.0,
            "mean_landslide_m2": slide_px * px_m2 / count if count else 0.0,
            "split_axis": split.axis,
            "blocks": {k: [b.rows, b.cols] for k, b in split.blocks().items()},
            "validation": split.validation,
            "patches": {str(w): {k: b.count(w) for k, b in split.blocks().items()} for w in WINDOWS},
            "pre_event": _pre_event(site),
        }
    out["totals"] = {"patches": {str(w): sum(sum(s["patches"][str(w)].values()) for s in out["sites"].values())
                                 for w in WINDOWS}}
    return out


def _pre_event(site: Site) -> dict | None:
    """The pre-event image (s2_pre.tif) in numbers a change study needs: coverage and the NDVI change."""
    if site.bands_pre is None:
        return None
    if "dndvi" not in site.channels:  # no red and nir: no NDVI change to describe
        return {"coverage": site.meta.get("pre_event_coverage")}
    v = site.valid
    post, pre, d = (site.channel(c)[v] for c in ("ndvi", "ndvi_pre", "dndvi"))
    out = {"coverage": site.meta.get("pre_event_coverage"), "mean_ndvi_post": float(post.mean()),
           "mean_ndvi_pre": float(pre.mean()), "mean_dndvi": float(d.mean())}
    if site.label is not None:
        slides = site.label[v] == 1
        out["mean_dndvi_landslides"] = float(d[slides].mean()) if slides.any() else None
        out["mean_dndvi_other"] = float(d[~slides].mean()) if (~slides).any() else None
    return out


def format_description(desc: dict) -> str:
    """A plain-text table of ``describe_sites`` output."""
    lines = [f"{'site':<10} {'CRS':<11} {'px m':>5} {'rows x cols':>12} {'km2':>7} {'slides':>7} "
             f"{'frac %':>7} {'mean px':>8} {'mean m2':>9}  patches train/val/test @32 | @64 | @128"]
    for name, s in desc["sites"].items():
        patches = " | ".join("/".join(str(s["patches"][str(w)][k]) for k in ("train", "val", "test"))
                             for w in WINDOWS)
        lines.append(f"{name:<10} {s['crs']:<11} {s['pixel_size_m']:>5.1f} {s['shape'][0]:>5} x {s['shape'][1]:<5}"
                     f" {s['area_km2']:>7.1f} {s['landslide_count']:>7} {100 * s['landslide_fraction']:>7.2f}"
                     f" {s['mean_landslide_px']:>8.1f} {s['mean_landslide_m2']:>9.0f}  {patches}")
    for name, s in desc["sites"].items():
        lines.append(f"{name}: {s['sensor']} ({s['image']}), bands {', '.join(s['bands'])} in {s['units']}, "
                     f"{s['pixel_size_m']:g} m pixels")
    for name, s in desc["sites"].items():
        v = s.get("validation") or {}
        if v.get("short"):
            lines.append(f"{name}: the validation block {v['short']}; early stopping may follow noise")
        elif v.get("grown_from"):
            lines.append(f"{name}: validation block grown from {v['grown_from']} to {v['lines']} {s['split_axis']} "
                         f"to hold {v['valid_pixels']} valid and {v['landslide_pixels']} landslide pixels")
    for name, s in desc["sites"].items():
        pre = s.get("pre_event")
        if pre and "mean_dndvi" in pre:
            slides = pre.get("mean_dndvi_landslides")
            lines.append(f"{name}: pre-event image, mean NDVI {pre['mean_ndvi_pre']:.3f} before, "
                         f"{pre['mean_ndvi_post']:.3f} after; mean dNDVI {pre['mean_dndvi']:+.3f}"
                         + (f" ({slides:+.3f} on landslides)" if slides is not None else ""))
    totals = desc["totals"]["patches"]
    lines.append("total patches: " + ", ".join(f"{w}px: {n}" for w, n in totals.items())
                 + "  (paper: 7888, 1972, 592 at scale 1)")
    return "\n".join(lines)


def format_baseline(result: dict) -> str:
    """The baseline's P/R/F1 per scenario and test area as a plain-text table."""
    areas = list(next(iter(result["scenarios"].values())))
    lines = [f"{'trained on':<11} {'thresholds':<22} " + " ".join(f"{a + ' P/R/F1':>20}" for a in areas)]
    for scenario, per_area in result["scenarios"].items():
        t = result["thresholds"][scenario]
        cells = " ".join(f"{shown(m['precision']):>6}/{shown(m['recall'])}/{shown(m['f1'])}" for m in per_area.values())
        index = f"NDVI<{t['ndvi_max']:<5.2f}" if "ndvi_max" in t else f"rdNDVI<{t['rdndvi_max']:<4.0f}"
        lines.append(f"{scenario:<11} {index} slope>={t['slope_min']:<5.1f} {cells}")
    return "\n".join(lines)
