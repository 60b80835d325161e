"""The paper's U-Net (Ronneberger et al. 2015 as configured by Ghorbanzadeh et al. 2021), plus shape helpers.

Layout (docs/architecture.md, "The paper's models"; paper Table 2), with ``base_filters = f`` (32 in the paper):

* encoder: 4 blocks of two 3x3 conv (padding 1) + ReLU, each followed by a 2x2 max-pool of stride 2,
  with f, 2f, 4f, 8f filters;
* bottom: two 3x3 conv + ReLU with 16f filters (512 for f = 32, "512 feature maps after the last block");
* decoder: 4 steps of a 2x2 transposed conv of stride 2 that halves the filters, concatenation with the
  encoder output of the same level, and two 3x3 conv + ReLU;
* head: a 1x1 conv to one logit per pixel.

That is 19 ``Conv2d`` (18 3x3 + the 1x1 head) and 4 ``ConvTranspose2d``: the paper's 23 convolutional
layers. The paper ends with a sigmoid; here ``forward`` returns logits because the loss is
``BCEWithLogitsLoss`` (numerically stable) and the sigmoid is applied when probabilities are needed.

The total stride is 16. Inputs of any size are accepted: ``forward`` pads them at the bottom and right up to
the next multiple of 16 and crops the logits back, so a whole test area goes through in one call. Padding
only at the bottom/right keeps pixel (0, 0) on the pooling grid, so a tile's prediction does not depend on
how much padding it needed.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "crop_to", "pad_to_multiple", "paper_conv_count"]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` (N, C, H, W) at the bottom/right so H and W are multiples of ``multiple``.

    Reflection is used where it can be (it avoids a hard zero edge that the network never saw in training);
    inputs smaller than the padding fall back to edge replication, which works for any size.

    Returns:
        The padded tensor and the original (H, W), for :func:`crop_to`.
    """
    h, w = x.shape[-2:]
    pad_h = (-h) % multiple
    pad_w = (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (h, w)
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size`` pixels."""
    h, w = size
    return x[..., :h, :w]


def paper_conv_count(model: nn.Module) -> int:
    """Number of layers the paper counts as "convolutional" (23 for the U-Net, 15 for the ResU-Net)."""
    return len(model.paper_conv_layers())  # type: ignore[operator]


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv + ReLU, the U-Net's block (padding 1 keeps the size, unlike the 2015 original)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with 4 pooling levels and ``base_filters * 16`` maps at the bottom; returns logits.

    Args:
        in_channels: input bands (5 for B2, B3, B4, B8, slope).
        base_filters: filters of the first block; doubled per level (the paper: 32 -> 512 at the bottom).
        out_channels: logits per pixel (1 for landslide / no landslide).
    """

    output_stride: int = 16
    depth: int = 4

    def __init__(self, in_channels: int = 5, base_filters: int = 32, out_channels: int = 1) -> None:
        super().__init__()
        if isinstance(base_filters, bool) or not isinstance(base_filters, int) or base_filters < 1:
            raise ValueError(f"base_filters must be a positive integer (the paper: 32), got {base_filters!r}")
        widths = [base_filters * 2**i for i in range(self.depth)]  # 32, 64, 128, 256
        self.encoder = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.encoder.append(double_conv(channels, width))
            channels = width
        self.pools = nn.ModuleList(nn.MaxPool2d(kernel_size=2, stride=2) for _ in widths)
        self.bottom = double_conv(channels, channels * 2)  # 512
        channels *= 2
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for width in reversed(widths):
            self.ups.append(nn.ConvTranspose2d(channels, width, kernel_size=2, stride=2))
            self.decoder.append(double_conv(2 * width, width))
            channels = width
        self.head = nn.Conv2d(channels, out_channels, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal weights, zero biases (Ronneberger et al. 2015, section 3).

        A 23-layer plain ReLU network loses its signal with PyTorch's default init (each layer shrinks the
        variance), so the deep levels would start silent; He init keeps activations at scale through depth.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.ConvTranspose2d):
                # Kernel 2 = stride 2: each output pixel sees one tap per input channel, so fan-in is C_in
                # (PyTorch's fan_in of a transposed weight would be C_out * 4).
                nn.init.normal_(m.weight, std=(2.0 / m.in_channels) ** 0.5)
            else:
                continue
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, out_channels, H, W) for an input (N, in_channels, H, W) of any H, W."""
        x, size = pad_to_multiple(x, self.output_stride)
        skips = []
        for block, pool in zip(self.encoder, self.pools):
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.bottom(x)
        for up, block, skip in zip(self.ups, self.decoder, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        return crop_to(self.head(x), size)

    def paper_conv_layers(self) -> list[nn.Module]:
        """The 23 layers the paper counts: every Conv2d and ConvTranspose2d."""
        return [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
