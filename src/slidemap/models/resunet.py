"""The paper's ResU-Net (Zhang, Liu & Wang 2018, "Road extraction by deep residual U-Net"); returns logits.

Layout (Zhang et al. Table 1, Ghorbanzadeh et al. Table 3), with ``base_filters = f`` (64):

=========  ======================  ========  ======  ===========================================
level      unit                    filters   stride  resolution of the unit's output
=========  ======================  ========  ======  ===========================================
encoder 1  conv1, conv2             f         1       1    -> skip to decoder 3
encoder 2  conv3, conv4             2f        2       1/2  -> skip to decoder 2
encoder 3  conv5, conv6             4f        2       1/4  -> skip to decoder 1
bridge     conv7, conv8             8f        2       1/8
decoder 1  up, concat, conv9-10     4f        1       1/4
decoder 2  up, concat, conv11-12    2f        1       1/2
decoder 3  up, concat, conv13-14    f         1       1
head       1x1 conv15               1         1       1
=========  ======================  ========  ======  ===========================================

Which units downsample: the design asks for "stride 2 in the first conv of each encoder unit", but with three skip
connections and the bridge that only lines up as in Zhang et al.: the first unit works at full resolution
(stride 1, so its output is the full-resolution skip), and the stride-2 conv opens units 2, 3 and the bridge.
Three halvings give a total stride of 8, and each decoder unit sees its upsampled input at the resolution of
the encoder unit it is concatenated with.

Units are pre-activation residual units (He et al. 2016): BN -> ReLU -> 3x3 conv, twice, plus a shortcut.
The first unit takes the raw bands, so (as in Zhang et al.) it starts with the conv: conv -> BN -> ReLU ->
conv. The shortcut is the identity when the shape is kept and a 1x1 conv (with the unit's stride) + BN when
the channels or the size change -- which is every unit here, since each changes width or size.
Upsampling is a 2x2 transposed conv of stride 2 that halves the channels (the paper's Conv2DTranspose;
Zhang et al. used plain upsampling). The paper counts 15 convolutional layers: 7 units x 2 + the head;
shortcut projections and transposed convs are not counted (:meth:`ResUNet.paper_conv_layers`).

Like :class:`~slidemap.models.unet.UNet`, ``forward`` pads any input up to a multiple of 8 and crops the
logits back; the paper's final sigmoid lives in the loss (``BCEWithLogitsLoss``).
"""

from __future__ import annotations


import torch
from torch import nn

from slidemap.models.unet import crop_to, pad_to_multiple

__all__ = ["ResUNet", "ResidualUnit", "Projection"]


class Projection(nn.Sequential):
    """1x1 conv + BN shortcut (the paper's linear projection W_i); its own class so counts can skip it."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride),
            nn.BatchNorm2d(out_channels),
        )


class ResidualUnit(nn.Module):
    """Pre-activation residual unit: ``body(x) + shortcut(x)``.

    Args:
        in_channels: channels of ``x``.
        out_channels: channels of the unit's output.
        stride: stride of the first 3x3 conv (2 to downsample, instead of max-pooling).
        first: the network's first unit, which meets raw bands: conv -> BN -> ReLU -> conv
            (no leading BN/ReLU).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, first: bool = False) -> None:
        super().__init__()
        conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)
        conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        pre: list[nn.Module] = [] if first else [nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(
            *pre, conv1, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), conv2
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else Projection(in_channels, out_channels, stride)
        )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual output ``body(x) + shortcut(x)``."""
        return self.body(x) + self.shortcut(x)

    def convs(self) -> list[nn.Conv2d]:
        """The unit's two 3x3 convs (the ones the paper counts)."""
        return [m for m in self.body if isinstance(m, nn.Conv2d)]


class ResUNet(nn.Module):
    """Residual U-Net with 3 encoder units, a bridge and 3 decoder units; returns logits.

    Args:
        in_channels: input bands (5 for B2, B3, B4, B8, slope).
        base_filters: filters of the first unit; doubled per level up to ``8 * base_filters`` in the bridge.
        out_channels: logits per pixel (1 for landslide / no landslide).
    """

    output_stride: int = 8

    def __init__(self, in_channels: int = 5, base_filters: int = 64, out_channels: int = 1) -> None:
        super().__init__()
        if isinstance(base_filters, bool) or not isinstance(base_filters, int) or base_filters < 1:
            raise ValueError(f"base_filters must be a positive integer (the paper: 64), got {base_filters!r}")
        f = base_filters
        self.encoder = nn.ModuleList(
            [
                ResidualUnit(in_channels, f, stride=1, first=True),
                ResidualUnit(f, 2 * f, stride=2),
                ResidualUnit(2 * f, 4 * f, stride=2),
            ]
        )
        self.bridge = ResidualUnit(4 * f, 8 * f, stride=2)
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for width in (4 * f, 2 * f, f):
            self.ups.append(nn.ConvTranspose2d(2 * width, width, kernel_size=2, stride=2))
            self.decoder.append(ResidualUnit(2 * width, width, stride=1))
        self.head = nn.Conv2d(f, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, out_channels, H, W) for an input (N, in_channels, H, W) of any H, W."""
        x, size = pad_to_multiple(x, self.output_stride)
        skips = []
        for unit in self.encoder:
            x = unit(x)
            skips.append(x)
        x = self.bridge(x)
        for up, unit, skip in zip(self.ups, self.decoder, reversed(skips)):
            x = unit(torch.cat([up(x), skip], dim=1))
        return crop_to(self.head(x), size)

    def units(self) -> list[ResidualUnit]:
        """The 7 residual units in forward order: encoder 1-3, bridge, decoder 1-3."""
        return [*self.encoder, self.bridge, *self.decoder]  # type: ignore[list-item]

    def paper_conv_layers(self) -> list[nn.Conv2d]:
        """The 15 layers the paper counts: 2 convs per unit, then the 1x1 head (no shortcuts, no ups)."""
        return [conv for unit in self.units() for conv in unit.convs()] + [self.head]
