"""The report's prediction panels: per test area, a TP/FP/FN map of every model x window's run, read from the maps
the runs wrote (`slidemap report` -> predictions_<area>.png)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from rasterio.errors import RasterioError
from tqdm.auto import tqdm

from slidemap.data.sites.site import Site
from slidemap.data.tiling.split import SiteSplit
from slidemap.reporting.figures import save_figure
from slidemap.reporting.sweep import MODEL_ORDER, SCENARIO_ORDER, areas_of, input_sets, ordered, run_key

NODATA, TN, TP, FP, FN = range(5)
OUTCOME_COLOURS = ("#ffffff", "#e3e3e3", "#1a9850", "#d73027", "#2c7bb6")
OUTCOME_LABELS = ("no data", "true negative", "true positive (TP)", "false positive (FP)", "false negative (FN)")


def percent(value: float | None) -> str:
    """A fraction in percent with one decimal, n/a where the metric is undefined."""
    return "n/a" if value is None else f"{100 * value:.1f}"


def outcome_map(binary: np.ndarray, label: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per pixel NODATA/TN/TP/FP/FN codes from a 0/1 prediction (255 = nodata) and the inventory mask."""
    ok = valid & (binary != 255)
    pred, truth = binary == 1, label.astype(bool)
    out = np.full(binary.shape, NODATA, np.uint8)
    out[ok & ~pred & ~truth] = TN
    out[ok & pred & truth] = TP
    out[ok & pred & ~truth] = FP
    out[ok & ~pred & truth] = FN
    return out


@dataclass(frozen=True)
class PanelCell:
    """One map of a prediction panel: its outcome codes (None when the run or its map is missing)."""

    title: str
    outcome: np.ndarray | None
    note: str = ""


def plot_prediction_panel(area: str, scenario: str, rows: list[str], cols: list[str],
                          cells: list[list[PanelCell]], path: Path) -> Path:
    """A grid of TP/FP/FN maps of one test area: one row per model, one column per window."""
    shape = next((c.outcome.shape for row in cells for c in row if c.outcome is not None), (1, 1))
    cell_w = 3.6 if len(cols) <= 3 else 2.8
    cell_h = cell_w * min(max(shape[0] / shape[1], 0.3), 2.0)  # extreme strips are squeezed, not cropped
    fig = Figure(figsize=(cell_w * len(cols) + 0.6, (cell_h + 0.6) * len(rows) + 1.0), layout="constrained")
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    cmap = ListedColormap(OUTCOME_COLOURS)
    for i, row_name in enumerate(rows):
        for j, col_name in enumerate(cols):
            ax, cell = axes[i, j], cells[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_box_aspect(cell_h / cell_w)
            if cell.outcome is None:
                ax.text(0.5, 0.5, cell.note or "no run", ha="center", va="center", transform=ax.transAxes,
                        fontsize=9, color="grey", wrap=True)
            else:
                ax.imshow(cell.outcome, cmap=cmap, vmin=-0.5, vmax=len(OUTCOME_COLOURS) - 0.5,
                          interpolation="antialiased", interpolation_stage="rgba", aspect="auto")
            ax.set_title(cell.title, fontsize=9)
            if j == 0:
                ax.set_ylabel(row_name, fontsize=10, fontweight="bold")
    handles = [Patch(facecolor=c, edgecolor="grey", label=lab) for c, lab in zip(OUTCOME_COLOURS, OUTCOME_LABELS)]
    fig.legend(handles=handles[1:] + handles[:1], loc="outside lower center", ncols=5, fontsize=8, frameon=False)
    trained = "all sites" if scenario == "all" else scenario
    fig.suptitle(f"Test area {area}: predictions of models trained on {trained} (cf. paper Figs. 6-9)",
                 fontsize=11)
    return save_figure(fig, path, dpi=200)  # small landslides stay visible on large test areas


def panel_scenario(runs: list[dict[str, Any]], area: str) -> str:
    """Which training scenario an area's prediction panel shows: the site's own, else ``all``, else the first."""
    scenarios = ordered({r["scenario"] for r in runs}, SCENARIO_ORDER)
    return area if area in scenarios else ("all" if "all" in scenarios else scenarios[0])


def _read_binary(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _panel_cell(run: dict[str, Any] | None, area: str, window: int, site: Site, split: SiteSplit) -> PanelCell:
    """One map of a panel: the run's TP/FP/FN on the area, or why it cannot be drawn."""
    if run is None or area not in run["areas"]:
        return PanelCell(f"{window} px", None, "run missing")
    m = run["areas"][area]
    title = f"{window} px: F1 {percent(m['f1'])}%\n(P {percent(m['precision'])}, R {percent(m['recall'])})"
    rows, cols = split.test.slices
    try:
        binary = _read_binary(Path(run["dir"]) / "predictions" / f"{area}_binary.tif")
    except (RasterioError, OSError):
        return PanelCell(title, None, "no prediction map")
    if binary.shape != site.valid[rows, cols].shape:
        return PanelCell(title, None, "map does not match the test area")
    return PanelCell(title, outcome_map(binary, site.label[rows, cols], site.valid[rows, cols]))


def prediction_panels(runs: list[dict[str, Any]], sites: dict[str, Site], splits: dict[str, SiteSplit],
                      out: Path) -> dict[str, Path]:
    """Per test area, a TP/FP/FN panel (rows: models, times input sets when several; columns: windows) of its own
    scenario's runs."""
    inputs = input_sets(runs)
    models = [(m, i) for m in ordered({r["model"] for r in runs}, MODEL_ORDER) for i in inputs]
    windows = sorted({int(r["window"]) for r in runs})
    by_key = {}
    for r in runs:
        by_key.setdefault(run_key(r), r)
    jobs = [(area, m, w) for area in areas_of(runs) if area in sites for m in models for w in windows]
    cells: dict[tuple[str, tuple[str, str], int], PanelCell] = {}
    for area, (model, inputs_set), window in tqdm(jobs, desc="prediction maps", unit="map", leave=False):
        run = by_key.get((model, window, panel_scenario(runs, area), inputs_set))
        cells[(area, (model, inputs_set), window)] = _panel_cell(run, area, window, sites[area], splits[area])
    names = [m if len(inputs) == 1 else f"{m}, {i}" for m, i in models]
    written = {}
    for area in dict.fromkeys(a for a, _, _ in jobs):
        grid = [[cells[(area, m, w)] for w in windows] for m in models]
        if all(c.outcome is None for row in grid for c in row):
            continue
        written[area] = plot_prediction_panel(area, panel_scenario(runs, area), names, [f"{w} px" for w in windows],
                                              grid, out / f"predictions_{area}.png")
    return written
