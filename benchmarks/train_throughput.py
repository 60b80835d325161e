"""Training throughput on CPU: fp32 vs bf16 + channels-last, FLOP rate vs measured matmul rate,
Lightning overhead vs a bare loop, and the data-loading share of step time.

Prints the exact command line, then one Markdown table. All ratios in a row come from the same run;
times are medians of per-step timings after warm-up (the machine is shared and noisy).

    python benchmarks/train_throughput.py            # full run
    python benchmarks/train_throughput.py --quick    # about 3 minutes on a 2-core machine
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from slidemap.training.module import masked_bce

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import model_net  # noqa: E402 -- the benchmarks folder's own helper

BATCH = 4
IN_CHANNELS = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["unet", "resunet", "smp_unet"])
    p.add_argument("--windows", nargs="+", type=int, default=[32, 64, 128])
    p.add_argument("--batch-size", type=int, default=BATCH)
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--mm-size", type=int, default=2048, help="square matmul size for the hardware FLOP rate")
    p.add_argument("--synthetic-scale", type=float, default=0.1)
    p.add_argument("--quick", action="store_true", help="few steps (about 3 minutes on 2 cores)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = 6, 2
    return args


def matmul_rates(n: int, dtype: torch.dtype, reps: int = 5) -> list[float]:
    """Measured FLOP/s of ``reps`` n x n x n torch.mm calls in ``dtype`` (after 2 untimed calls)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(2):
        torch.mm(a, b)
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - t0))
    return rates


def make_batches(steps: int, window: int, batch: int, seed: int) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        x = torch.randn(batch, IN_CHANNELS, window, window, generator=g)
        y = (torch.rand(batch, window, window, generator=g) < 0.1).float()
        valid = torch.rand(batch, window, window, generator=g) < 0.95
        out.append((x, y, valid))
    return out


def new_model(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return model_net(name, IN_CHANNELS)[1]


def bare_loop(net: torch.nn.Module, batches, warmup: int, bf16: bool) -> list[float]:
    """Per-step wall times (s) of forward, masked BCE, backward, fused Adam; warm-up steps dropped."""
    net.train()
    if bf16:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    times = []
    it = iter(batches)
    t0 = time.perf_counter()
    for x, y, valid in it:
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)[:, 0].float()
            loss = masked_bce(logits, y, valid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        t0 = t1
    return times[warmup:]


def training_flops(name: str, window: int, batch: int, seed: int) -> int:
    """FLOPs (matmul/conv, as torch.utils.flop_counter counts them) of one forward + backward pass."""
    net = new_model(name, seed).train()
    x, y, valid = make_batches(1, window, batch, seed)[0]
    with FlopCounterMode(display=False) as counter:
        loss = masked_bce(net(x)[:, 0].float(), y, valid)
        loss.backward()
    return counter.get_total_flops()


def lightning_steps(name: str, batches, warmup: int, seed: int) -> tuple[list[float], float]:
    """Per-step intervals (s) inside one Trainer.fit (batch start to next batch start, warm-up dropped),
    and the whole fit() wall time."""
    import pytorch_lightning as pl

    from slidemap.training.module import LandslideModule

    stamps: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            stamps.append(time.perf_counter())

        def on_train_end(self, trainer, pl_module):
            stamps.append(time.perf_counter())

    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    valid = torch.cat([b[2] for b in batches])
    loader = DataLoader(TensorDataset(x, y, valid), batch_size=batches[0][0].shape[0], shuffle=False)
    module = LandslideModule(new_model(name, seed), optimizer=partial(torch.optim.Adam, lr=1e-3, fused=True),
                             channels_last=True)
    trainer = pl.Trainer(max_steps=len(batches), logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, precision="bf16-mixed", callbacks=[Clock()])
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    wall = time.perf_counter() - t0
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    return intervals[warmup:], wall


FULL_AUGMENT = {"name": "full", "flips": True, "offsets": True, "gain": 0.1, "haze": 0.01}  # conf/augment/full.yaml


def loader_batch_times(root: Path, window: int, batch: int, scale: float, seed: int, max_batches: int,
                       augment: dict | None = None) -> list[float]:
    """Per-batch fetch times (s) of the real SiteDataModule train loader at ``window`` (``augment``: e.g. windows
    at random offsets instead of the grid)."""
    from slidemap.data.loading.datamodule import SiteDataModule

    dm = SiteDataModule(str(root), window=window, batch_size=batch, seed=seed,
                        synthetic={"seed": 0, "scale": scale}, augment=augment)
    dm.setup("fit")
    times = []
    it = iter(dm.train_dataloader())
    while len(times) < max_batches:
        t0 = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            it = iter(dm.train_dataloader())
            continue
        times.append(time.perf_counter() - t0)
    return times


def augment_times(window: int, batch: int, reps: int = 50) -> list[float]:
    """Per-batch times (s) of ``augment=full``'s on-device part (jitter + D4) on a (batch, 5, w, w) batch."""
    from slidemap.data.loading.augment import Augmentation, augment_batch, generator_for

    aug = Augmentation.from_config({k: v for k, v in FULL_AUGMENT.items()})
    x = torch.randn(batch, 5, window, window)
    tensors = [x, (torch.rand(batch, window, window) < 0.1).float(), torch.rand(batch, window, window) < 0.95]
    mean, std = np.full(5, 0.1, np.float32), np.full(5, 0.05, np.float32)
    channels = ("B2", "B3", "B4", "B8", "slope")
    times = []
    for step in range(reps):
        t0 = time.perf_counter()
        augment_batch(tensors, aug, channels, mean, std, generator_for(0, step))
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print("$ " + " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv]), flush=True)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.manual_seed(args.seed)

    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    # The matmul rate is sampled at the start and again before every row, and the median of all samples is
    # the hardware limit: one burst of load from another process must not halve the reference for the table.
    fp32_samples = matmul_rates(args.mm_size, torch.float32)
    bf16_samples = matmul_rates(args.mm_size, torch.bfloat16)
    n_steps = args.warmup + args.steps

    tmp = tempfile.TemporaryDirectory(prefix="slidemap-bench-")
    root = Path(tmp.name) / "synthetic"
    t0 = time.perf_counter()
    from slidemap.data.synthetic import ensure_synthetic

    ensure_synthetic(root, scale=args.synthetic_scale, seed=0)
    synth_s = time.perf_counter() - t0
    load_ms = {w: 1e3 * statistics.median(loader_batch_times(root, w, args.batch_size, args.synthetic_scale,
                                                             args.seed, max_batches=max(50, n_steps)))
               for w in args.windows}
    offsets_ms = {w: 1e3 * statistics.median(loader_batch_times(root, w, args.batch_size, args.synthetic_scale,
                                                                args.seed, max_batches=max(50, n_steps),
                                                                augment=FULL_AUGMENT)) for w in args.windows}
    augment_ms = {w: 1e3 * statistics.median(augment_times(w, args.batch_size)) for w in args.windows}

    rows = []
    for window in args.windows:
        batches = make_batches(n_steps, window, args.batch_size, args.seed)
        mpx = args.batch_size * window * window / 1e6
        for name in args.models:
            fp32_samples += matmul_rates(args.mm_size, torch.float32, reps=3)
            bf16_samples += matmul_rates(args.mm_size, torch.bfloat16, reps=3)
            flops = training_flops(name, window, args.batch_size, args.seed)
            t32 = statistics.median(bare_loop(new_model(name, args.seed), batches, args.warmup, bf16=False))
            bf_steps = bare_loop(new_model(name, args.seed), batches, 0, bf16=True)
            tbf = statistics.median(bf_steps[args.warmup:])
            tpl_steps, fit_wall = lightning_steps(name, batches, args.warmup, args.seed)
            tpl = statistics.median(tpl_steps)
            rows.append({  # FLOP-rate percentages are filled in below, against the median of all matmul samples
                "model": name, "window": window,
                "fp32": mpx / t32, "bf16": mpx / tbf, "speedup": t32 / tbf,
                "flop_px": flops / (args.batch_size * window * window),
                "flops": flops, "t32": t32, "tbf": tbf,
                "step_ms": 1e3 * tbf, "pl_ms": 1e3 * tpl, "pl_over": 100 * (tpl / tbf - 1),
                "fit_over": 100 * (fit_wall / sum(bf_steps) - 1),
                "load_ms": load_ms[window], "load_pct": 100 * load_ms[window] / (1e3 * tbf),
                "aug_pct": 100 * (offsets_ms[window] - load_ms[window] + augment_ms[window]) / (1e3 * tbf),
                "offsets_ms": offsets_ms[window], "augment_ms": augment_ms[window],
            })
            print(f"  done {name} @ {window}px ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    fp32_rate, bf16_rate = statistics.median(fp32_samples), statistics.median(bf16_samples)
    for r in rows:
        r["pct_fp32"] = 100 * r["flops"] / r["t32"] / fp32_rate
        r["pct_bf16"] = 100 * r["flops"] / r["tbf"] / bf16_rate
    print()
    print(f"matmul {args.mm_size}^3 (median of {len(fp32_samples)} samples through the run): "
          f"fp32 {fp32_rate / 1e9:.1f} GFLOP/s (min {min(fp32_samples) / 1e9:.0f}, max {max(fp32_samples) / 1e9:.0f}), "
          f"bf16 {bf16_rate / 1e9:.1f} GFLOP/s (min {min(bf16_samples) / 1e9:.0f}, max {max(bf16_samples) / 1e9:.0f}); "
          f"batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up; "
          f"threads {torch.get_num_threads()}; torch {torch.__version__}; "
          f"synthetic data (scale {args.synthetic_scale}) generated in {synth_s:.0f} s; "
          f"total {time.perf_counter() - start:.0f} s; "
          f"1-min load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end (nproc {os.cpu_count()})")
    print()
    print("| model | window | fp32 Mpx/s | bf16+CL Mpx/s | bf16/fp32 | MFLOP/px (train) | % fp32 mm | % bf16 mm "
          "| bare bf16 step ms | Lightning step ms | Lightning overhead % | whole fit() vs bare loop % | load ms/batch "
          "| load % of step | offsets load ms/batch | flips+jitter ms/batch | augment=full extra % of step |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['window']} | {r['fp32']:.3f} | {r['bf16']:.3f} | {r['speedup']:.2f}x "
              f"| {r['flop_px'] / 1e6:.2f} | {r['pct_fp32']:.1f} | {r['pct_bf16']:.1f} | {r['step_ms']:.1f} "
              f"| {r['pl_ms']:.1f} | {r['pl_over']:+.1f} | {r['fit_over']:+.1f} | {r['load_ms']:.3f} "
              f"| {r['load_pct']:.2f} "
              f"| {r['offsets_ms']:.3f} | {r['augment_ms']:.3f} | {r['aug_pct']:+.2f} |")
    tmp.cleanup()


if __name__ == "__main__":
    main()
