"""Wrap segmentation-models-pytorch architectures as slidemap models (baselines beside the paper's two).

The wrapper fixes what slidemap needs from every model: one logit per pixel, any input size (pad to the
encoder's stride, crop back), and never a weight download:
``encoder_weights`` defaults to ``None`` because runs here have no network and the paper trained from scratch.
"""

from __future__ import annotations

from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from slidemap.models.unet import crop_to, pad_to_multiple

__all__ = ["SmpModel"]


class InputAffine(nn.Module):
    """``x * scale + shift`` per channel, with fixed (not trained) values kept in the state dict."""

    def __init__(self, scale: list[float], shift: list[float], in_channels: int) -> None:
        super().__init__()
        if len(scale) != in_channels or len(shift) != in_channels:
            raise ValueError(f"input_scale and input_shift need one value per input channel ({in_channels}), got "
                             f"{len(scale)} and {len(shift)}")
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


class SmpModel(nn.Module):
    """Any ``smp.create_model`` architecture with ``classes=1``; returns logits.

    Args:
        arch: smp architecture name ("Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus", ...).
        encoder_name: smp encoder ("resnet34", "efficientnet-b0", ...).
        encoder_weights: pretrained encoder weights; ``None`` (default) initialises randomly. A name such as
            "imagenet" makes smp download them, which only works with network access.
        in_channels: input bands.
        input_scale, input_shift: a fixed per-channel affine map applied to the input before the encoder
            (``x * scale + shift``), so that an encoder with pretrained weights sees its inputs normalised as the
            weights expect while the data keep slidemap's normaliser (:mod:`slidemap.training.weights_card`).
            ``None``: the identity.
        **kwargs: passed on to the smp architecture (e.g. ``decoder_channels``).
    """

    def __init__(
        self,
        arch: str = "Unet",
        encoder_name: str = "resnet34",
        encoder_weights: str | None = None,
        in_channels: int = 5,
        input_scale: list[float] | None = None,
        input_shift: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.input_affine = None if input_scale is None and input_shift is None else InputAffine(
            input_scale or [1.0] * in_channels, input_shift or [0.0] * in_channels, in_channels)
        self.net = smp.create_model(
            arch,
            encoder_name=encoder_name,
            encoder_weights=encoder_weights,
            in_channels=in_channels,
            classes=1,
            **kwargs,
        )
        # The encoder's reduction (32 for ResNets); smp's decoders need inputs divisible by it.
        self.output_stride: int = int(self.net.encoder.output_stride)

    def encoder_module(self) -> nn.Module:
        """The encoder: where pretrained weights go (:mod:`slidemap.models.pretrained`), what ``freeze_encoder``
        freezes and ``encoder_lr_scale`` slows down."""
        return self.net.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 1, H, W) for an input (N, in_channels, H, W) of any H, W."""
        if self.input_affine is not None:
            x = self.input_affine(x)
        x, size = pad_to_multiple(x, self.output_stride)
        return crop_to(self.net(x), size)
