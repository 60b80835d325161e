"""Build any segmentation network from its config: a ``_target_`` and its arguments, the channel counts filled in.

Training and checkpoint loading both go through :func:`build_net`, so a network is rebuilt exactly as it was
trained: the checkpoint keeps the config :func:`net_config` returns. Nothing is registered by name; a new
network is a new ``conf/model/*.yaml`` (or ``model=custom`` with any ``model.net._target_``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from torch import nn

IN_CHANNEL_ARGS = ("in_channels", "in_chans", "num_channels")
"""How networks name their input channel count (slidemap's and smp's, timm's, transformers')."""

OUT_CHANNEL_ARGS = ("out_channels", "classes", "num_classes")
"""How networks name their output channel count; slidemap asks for one logit per pixel."""


def network_class(config: Mapping[str, Any]) -> type[nn.Module]:
    """The class named by ``config['_target_']``; it must be a ``torch.nn.Module``.

    Raises:
        ValueError: no ``_target_``, a target that cannot be imported, or one that is not a network class (a
            checkpoint must not be able to call arbitrary functions when it is loaded).
    """
    target = config.get("_target_") if isinstance(config, Mapping) else None
    if not isinstance(target, str) or not target:
        raise ValueError("the network config has no _target_ (e.g. slidemap.models.UNet)")
    try:
        cls = get_object(target)
    except (ImportError, ValueError, InstantiationException) as err:
        raise ValueError(f"cannot import network class {target!r}: {' '.join(str(err).split())[:160]}") from None
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise ValueError(f"{target!r} is not a torch.nn.Module class")
    return cls


def _argument(params: Mapping[str, inspect.Parameter], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in params), None)


def net_config(config: Mapping[str, Any], in_channels: int) -> dict[str, Any]:
    """The complete network config: ``config`` with the input channels (and one output channel, where the
    network takes an output count) under the argument names its class uses.

    Raises:
        ValueError: the class is not a network, or it has no argument for the input channels.
    """
    cls = network_class(config)
    params = inspect.signature(cls).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    filled = dict(config)
    in_arg = _argument(params, IN_CHANNEL_ARGS) or ("in_channels" if takes_kwargs else None)
    if in_arg is None:
        raise ValueError(f"{config['_target_']} takes no input channel count (one of {', '.join(IN_CHANNEL_ARGS)})")
    filled[in_arg] = int(in_channels)
    out_arg = _argument(params, OUT_CHANNEL_ARGS)
    if out_arg is not None:
        filled[out_arg] = 1
    return filled


def build_net(config: Mapping[str, Any]) -> nn.Module:
    """Instantiate a complete network config (:func:`net_config`).

    Raises:
        ValueError: the target is not a network class, or its constructor refuses the arguments.
    """
    network_class(config)
    try:
        return instantiate(dict(config), _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ValueError(f"cannot build {config['_target_']}: {' '.join(str(cause).split())[:200]}") from None
