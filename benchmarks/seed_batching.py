"""Seeds trained together: the ceiling of batching the seeds of one cell into one vectorised model (issue 14, item 6).

A 3-seed sweep does three times the work of a one-seed sweep; the issue's target is 1.5x the wall time, so the
seeds would have to train 2x faster together than one after another. Small windows leave the machine idle (few
pixels per convolution), so stacking the members' weights and running them as one vectorised model
(``torch.func.stack_module_state`` + ``functional_call`` under ``vmap``; BatchNorm buffers stacked with them) raises
the work per operation. This script measures, per model and window, one training step of K members:

- **sequential**: K separate networks, each with its own fused Adam, one after another (today's sweep);
- **vmap**: the K members as one stacked model, each on its own batch, one fused Adam over the stacked weights
  (Adam is elementwise, so this is K independent Adams);
- **one model, K x batch**: a single network on a K times larger batch: the upper bound of "more work per
  operation" (no per-member weights at all).

It also checks that the vmapped step is the same computation: in fp32, the K members' gradients computed together
equal (to round-off) those computed one by one (the largest difference relative to the model's largest
gradient). Prints the command, the CPU and load, then one Markdown table; every ratio in a row comes from the same
run (medians over interleaved steps).

    python benchmarks/seed_batching.py                 # about 4 minutes on 2 cores
    python benchmarks/seed_batching.py --quick         # about 1 minute
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from slidemap.training.module import masked_bce

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child import cpu_name  # noqa: E402 -- the benchmarks folder's own helpers
from models import model_net  # noqa: E402

IN_CHANNELS = 5
BATCH = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["unet", "resunet"])
    p.add_argument("--windows", nargs="+", type=int, default=[32, 64, 128])
    p.add_argument("--members", type=int, default=3, help="seeds trained together (K)")
    p.add_argument("--steps", type=int, default=12, help="timed steps per variant (interleaved)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="4 timed steps, 2 warm-up")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = 4, 2
    return args


class Stacked:
    """K copies of one network as one vectorised model: stacked weights and buffers, one optimiser."""

    def __init__(self, nets: list[nn.Module]) -> None:
        params, self.buffers = stack_module_state(nets)
        self.params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        self.base = copy.deepcopy(nets[0]).to("meta")
        self.optimizer = torch.optim.Adam(self.params.values(), lr=1e-3, fused=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(K, N, C, H, W) -> (K, N, 1, H, W): member k on batch k."""
        def one(p: dict, b: dict, xk: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (p, b), (xk,))
        return vmap(one)(self.params, self.buffers, x)

    def step(self, x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, autocast: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = self.forward(x)
        # the sum of the members' own losses: each member's gradient is its own loss's gradient
        loss = sum(masked_bce(logits[k, :, 0].float(), y[k], valid[k]) for k in range(x.shape[0]))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def sequential_step(nets: list[nn.Module], optimizers: list[torch.optim.Optimizer], x: torch.Tensor,
                    y: torch.Tensor, valid: torch.Tensor, autocast: bool) -> None:
    for k, (net, optimizer) in enumerate(zip(nets, optimizers)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = net(x[k])
        loss = masked_bce(logits[:, 0].float(), y[k], valid[k])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def members(model: str, k: int) -> list[nn.Module]:
    nets = []
    for seed in range(k):
        torch.manual_seed(seed)
        nets.append(model_net(model, IN_CHANNELS)[1].train())
    return nets


def batch(k: int, window: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(k, BATCH, IN_CHANNELS, window, window, generator=g)
    y = (torch.rand(k, BATCH, window, window, generator=g) < 0.1).float()
    valid = torch.rand(k, BATCH, window, window, generator=g) < 0.95
    return x, y, valid


def same_computation(model: str, k: int, window: int) -> float:
    """Largest gradient difference, vmapped vs one by one, of one fp32 forward + backward of K members from the
    same weights on the same batches, relative to the model's largest gradient (per tensor it would mislead: a conv
    bias right before BatchNorm has a gradient of 0 in exact arithmetic, and BatchNorm weights' gradients are sums
    that cancel, so round-off there is large relative to the tensor itself).

    Gradients, not weights after a step: Adam's first steps move every weight by about lr * sign(gradient), so a
    round-off difference in a near-zero gradient would show as a weight difference of 2 * lr.
    """
    nets = members(model, k)
    stacked = Stacked(nets)
    x, y, valid = batch(k, window)
    for kk, net in enumerate(nets):
        masked_bce(net(x[kk])[:, 0], y[kk], valid[kk]).backward()
    logits = stacked.forward(x)
    sum(masked_bce(logits[kk, :, 0], y[kk], valid[kk]) for kk in range(k)).backward()
    grads = {name: torch.stack([dict(n.named_parameters())[name].grad for n in nets]) for name in stacked.params}
    largest = max(float(g.abs().max()) for g in grads.values())
    return max(float((value.grad - grads[name]).abs().max()) for name, value in stacked.params.items()) / largest


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(model: str, window: int, k: int, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds of one step of K members per variant (bf16 autocast, channels-last as training on CPU)."""
    nets = [n.to(memory_format=torch.channels_last) for n in members(model, k)]
    optimizers = [torch.optim.Adam(n.parameters(), lr=1e-3, fused=True) for n in nets]
    stacked = Stacked(members(model, k))
    single, single_opt = nets[0], optimizers[0]
    x, y, valid = batch(k, window)
    x_last = torch.stack([xk.contiguous(memory_format=torch.channels_last) for xk in x])
    big_x = x.reshape(k * BATCH, IN_CHANNELS, window, window).contiguous(memory_format=torch.channels_last)

    def one_big() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = single(big_x)
        loss = masked_bce(logits[:, 0].float(), y.reshape(-1, window, window), valid.reshape(-1, window, window))
        single_opt.zero_grad(set_to_none=True)
        loss.backward()
        single_opt.step()

    variants = {"sequential": lambda: sequential_step(nets, optimizers, x_last, y, valid, autocast=True),
                "vmap": lambda: stacked.step(x, y, valid, autocast=True),
                "one model": one_big}
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(steps):  # interleaved: a burst of load from elsewhere hits every variant alike
        for name, fn in variants.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print("$ python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]))
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average at start {os.getloadavg()[0]:.2f}; K = {args.members} members, batch {BATCH} each, "
          f"bf16 autocast")
    print()
    print("| model | window | sequential K steps (ms) | vmap K members (ms) | one model, K x batch (ms) | "
          "vmap speed-up | ceiling speed-up | fp32 gradient diff vmap vs sequential (rel. to largest) |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for model in args.models:
        for window in args.windows:
            t = measure(model, window, args.members, args.steps, args.warmup)
            diff = same_computation(model, args.members, min(window, 32))
            print(f"| {model} | {window} | {1e3 * t['sequential']:.1f} | {1e3 * t['vmap']:.1f} | "
                  f"{1e3 * t['one model']:.1f} | {t['sequential'] / t['vmap']:.2f}x | "
                  f"{t['sequential'] / t['one model']:.2f}x | {diff:.1e} |", flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
