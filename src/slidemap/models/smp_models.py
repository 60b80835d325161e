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


class SmpModel(nn.Module):
    """Any ``smp.create_model`` architecture with ``classes=1``; returns logits.

    Args:
        arch: smp architecture name ("Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus", ...).
        encoder_name: smp encoder ("resnet34", "efficientnet-b0", ...).
        encoder_weights: pretrained encoder weights; ``None`` (default) initialises randomly. A name such as
            "imagenet" makes smp download them, which only works with network access.
        in_channels: input bands.
        **kwargs: passed on to the smp architecture (e.g. ``decoder_channels``).
    """

    def __init__(
        self,
        arch: str = "Unet",
        encoder_name: str = "resnet34",
        encoder_weights: str | None = None,
        in_channels: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__()
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
        x, size = pad_to_multiple(x, self.output_stride)
        return crop_to(self.net(x), size)
