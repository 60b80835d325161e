"""Segmentation models: the paper's U-Net and ResU-Net, smp baselines, a registry by name."""

from slidemap.models.registry import MODELS, build_model
from slidemap.models.resunet import ResUNet
from slidemap.models.smp_models import SmpModel
from slidemap.models.unet import UNet, paper_conv_count

__all__ = ["MODELS", "ResUNet", "SmpModel", "UNet", "build_model", "paper_conv_count"]
