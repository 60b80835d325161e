"""What `map_throughput.py --engines` measures beside the command's own time: each engine's test-area F1 and a
per-operator profile of its network on one 512 px tile (torch profiler for torch, onnxruntime's own profiler)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slidemap.data.sites.reader import read_sites
from slidemap.data.tiling.split import split_sites
from slidemap.evaluation.scoring import confusion_counts, scores
from slidemap.mapping.checkpoint import load_checkpoint
from slidemap.mapping.ensemble import Ensemble
from slidemap.mapping.mosaic import MAP_TILE, default_overlap, fit_tile, iter_mosaic, site_reader
from slidemap.mapping.onnx_engine import OnnxModel

TILE = 512


def predictor(engine: str, ckpt: Path, onnx_files: dict[str, Path]) -> tuple[Any, torch.dtype | None]:
    """The engine's model as `slidemap map` builds it, and its autocast (bf16 for torch, as --precision auto here)."""
    if engine == "torch-bf16":
        model = Ensemble([load_checkpoint(ckpt)])
        model.channels_last()
        return model, torch.bfloat16
    return OnnxModel(onnx_files[engine], threads=torch.get_num_threads()), None


def area_f1(model: Any, autocast: torch.dtype | None, root: Path) -> dict[str, float]:
    """F1 (percent) per test area and pooled ("all"), mapped as `slidemap map` maps a scene (512 px tiles fitted to
    the area, a 64 px ramp), at the model's threshold."""
    sites = read_sites(root)
    splits = split_sites(sites)
    totals = {"tp": 0, "fp": 0, "fn": 0}
    out = {}
    for name, site in sites.items():
        block = splits[name].test
        read, valid = site_reader(site, model.normaliser, block)
        tile = fit_tile(MAP_TILE, valid.shape)
        prob = np.full(valid.shape, np.nan, np.float32)
        for r0, p in iter_mosaic(model, read, valid.shape, tile, overlap=default_overlap(tile), batch_size=1,
                                 progress=False, autocast=autocast):
            prob[r0:r0 + p.shape[0]] = p
        c = confusion_counts(np.nan_to_num(prob) > model.threshold, site.label[block.slices] == 1, valid)
        out[name] = 100 * float(scores(c["tp"], c["fp"], c["fn"])["f1"] or 0.0)
        for k in totals:
            totals[k] += c[k]
    out["all"] = 100 * float(scores(totals["tp"], totals["fp"], totals["fn"])["f1"] or 0.0)
    return out


def network_rate(model: Any, autocast: torch.dtype | None, channels: int, repeat: int = 5) -> float:
    """Mpx/s of the network alone on one 512 px tile per call (median of ``repeat`` after a warm-up)."""
    x = np.random.default_rng(0).standard_normal((1, channels, TILE, TILE)).astype(np.float32)
    times = []
    with torch.inference_mode():
        model(x, autocast)
        for _ in range(repeat):
            start = time.perf_counter()
            model(x, autocast)
            times.append(time.perf_counter() - start)
    return TILE * TILE / 1e6 / float(np.median(times))


def torch_profile(model: Ensemble, channels: int, top: int = 8) -> list[tuple[str, float, float]]:
    """(operator, ms per 512 px tile, share) of the torch bf16 forward pass, largest first."""
    x = torch.randn(1, channels, TILE, TILE).contiguous(memory_format=torch.channels_last)
    net = model.models[0].net
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                net(x)
    rows = [(e.key, e.self_cpu_time_total / 3 / 1e3) for e in prof.key_averages()]
    total = sum(ms for _, ms in rows)
    rows.sort(key=lambda r: -r[1])
    return [(k, ms, ms / total) for k, ms in rows[:top]]


def ort_profile(path: Path, channels: int, threads: int, workdir: Path, top: int = 8) -> list[tuple[str, float, float]]:
    """(operator type, ms per 512 px tile, share) from onnxruntime's profiler, largest first."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / path.stem)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, channels, TILE, TILE)).astype(np.float32)
    for _ in range(4):  # the first run is a warm-up, left out below
        session.run(None, {"input": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    first_end = runs[0]["ts"] + runs[0]["dur"] if runs else 0
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first_end:
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / 3
    total = sum(per_op.values())
    rows = sorted(per_op.items(), key=lambda r: -r[1])
    return [(k, ms, ms / total) for k, ms in rows[:top]]
