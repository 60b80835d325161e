"""Segmentation networks: the paper's U-Net and ResU-Net, smp architectures, any network built from its config."""

from slidemap.models.build import build_net, net_config, network_class
from slidemap.models.resunet import ResUNet
from slidemap.models.smp_models import SmpModel
from slidemap.models.unet import UNet, paper_conv_count

__all__ = ["ResUNet", "SmpModel", "UNet", "build_net", "net_config", "network_class", "paper_conv_count"]
