"""The networks of conf/model/*.yaml, built as train.py builds them: for benchmarks that time a model alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from slidemap.models import build_net, net_config

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def model_net(name: str, in_channels: int, **overrides: Any) -> tuple[dict[str, Any], nn.Module]:
    """The complete network config of ``conf/model/<name>.yaml`` (with ``overrides``) and the network it builds."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"), resolve=True)
    config = net_config({**cfg["net"], **overrides}, in_channels)
    return config, build_net(config)
