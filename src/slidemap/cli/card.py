"""``slidemap card CKPT [--json]``: a checkpoint's model card, for any checkpoint.

A checkpoint from before model cards gets a card of what it holds (network, channels, units, normaliser,
temperature, threshold) and says the rest (the data that trained it, the recipe, the scores) is unknown. A model that
is one seed of a sweep cell gets the F1 interval over the cell's seeds beside its own scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from slidemap.runs import METRICS_FILE


def add_card_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("card", help="print a checkpoint's model card (data, recipe, calibration, scores)")
    p.add_argument("ckpt", help="a checkpoint (or a run folder: its checkpoints/best.ckpt)")
    p.add_argument("--json", action="store_true", help="the card as JSON")
    p.set_defaults(func=card_command)


def held_card(model: Any) -> dict[str, Any]:
    """The card of a checkpoint without one: what its hyper-parameters hold."""
    stats = zip(model.channels, model.units or ["?"] * len(model.channels), model.normaliser.mean,
                model.normaliser.std)
    return {"name": model.model_name, "network": {"class": type(model.net).__name__, "arguments": {},
                                                  "parameters": int(sum(p.numel() for p in model.net.parameters()))},
            "inputs": {"window": model.window, "channels": [{"name": c, "unit": u, "mean": float(m), "sd": float(s),
                                                             "median": float("nan")} for c, u, m, s in stats]},
            "calibration": {"temperature": model.temperature}, "threshold": model.threshold,
            "unknown": ["data", "training", "scores"]}


def seed_intervals(ckpt: Path) -> dict[str, str]:
    """F1 per test area over the seeds of the checkpoint's sweep cell (its run's siblings with the same cell)."""
    from slidemap.reporting.stats import bounded, t_interval
    from slidemap.reporting.tables import format_interval

    run = ckpt.parent.parent
    try:
        own = json.loads((run / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    cell = own.get("cell")
    siblings = []
    for other in sorted(run.parent.glob(f"*/{METRICS_FILE}")):
        try:
            record = json.loads(other.read_text())
        except (OSError, ValueError):
            continue
        if record.get("cell") == cell and cell is not None:
            siblings.append(record)
    seeds = [r.get("seed") for r in siblings]
    if len(siblings) < 2 or len(set(seeds)) != len(seeds):  # a seed twice: not an interval over seeds
        return {}
    areas = own.get("areas") or {}
    out = {}
    for area in areas:
        values = [r["areas"][area]["f1"] for r in siblings if (r.get("areas") or {}).get(area, {}).get("f1")
                  is not None]
        out[area] = f"{format_interval(bounded(t_interval(values)))} (n = {len(values)})"
    return out


def card_command(args: argparse.Namespace) -> int:
    from slidemap.mapping.checkpoint import load_checkpoint  # torch: imported by the command, not by --help
    from slidemap.mapping.model_card import UNKNOWN, card_markdown, file_fingerprint

    model = load_checkpoint(args.ckpt)
    card = model.card or held_card(model)
    if args.json:
        print(json.dumps({**card, "checkpoint": str(model.path), "fingerprint": file_fingerprint(model.path)},
                         indent=2, default=str))
        return 0
    text = card_markdown(card, model.path, seed_intervals(model.path) or None)
    if model.card is None:
        text += f"\nThis checkpoint has no card ({UNKNOWN}): the data that trained it, its recipe and scores."
        text += f" It records that it was trained on {model.data_kind} data.\n" if model.data_kind else "\n"
    print(text, end="")
    return 0

