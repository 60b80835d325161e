"""Segmentation networks: the paper's U-Net and ResU-Net, smp architectures, any network built from its config."""

from typing import Any

from slidemap.models.build import build_net, net_config, network_class
from slidemap.models.resunet import ResUNet
from slidemap.models.unet import UNet, paper_conv_count

__all__ = ["ResUNet", "SmpModel", "UNet", "build_net", "net_config", "network_class", "paper_conv_count"]


def __getattr__(name: str) -> Any:
    """``SmpModel`` on first use: segmentation-models-pytorch (with timm and torchvision) takes seconds to import,
    which the paper's U-Net and ResU-Net, and every ``slidemap --help``, do without."""
    if name == "SmpModel":
        from slidemap.models.smp_models import SmpModel

        return SmpModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
