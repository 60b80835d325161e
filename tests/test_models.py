"""The models match the paper's layer counts and filters, take any input size, and build from their configs offline."""

from __future__ import annotations

import inspect
import socket
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from slidemap.models import ResUNet, SmpModel, UNet, build_net, net_config, paper_conv_count
from slidemap.models.resunet import Projection, ResidualUnit
from slidemap.models.unet import pad_to_multiple


REPO = Path(__file__).resolve().parents[1]


def build_model(name: str, in_channels: int = 5) -> nn.Module:
    """The network of ``conf/model/<name>.yaml``, built as train.py builds it."""
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml"), resolve=True)
    return build_net(net_config(cfg["net"], in_channels))


def _count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def _conv_outs(module: nn.Module) -> list[int]:
    return [m.out_channels for m in module.modules() if type(m) is nn.Conv2d]


@pytest.fixture(scope="module")
def unet() -> UNet:
    return UNet(in_channels=5)


@pytest.fixture(scope="module")
def resunet() -> ResUNet:
    return ResUNet(in_channels=5)


@pytest.fixture(scope="module")
def smp_model() -> SmpModel:
    return SmpModel(in_channels=5)


# --- U-Net: the paper's 23 layers ---------------------------------------------------------------------------


def test_unet_counts_match_paper(unet: UNet) -> None:
    assert _count(unet, nn.Conv2d) == 19
    assert _count(unet, nn.ConvTranspose2d) == 4
    assert paper_conv_count(unet) == 23
    assert _count(unet, nn.MaxPool2d) == 4
    assert _count(unet, nn.BatchNorm2d) == 0
    assert unet.output_stride == 16


def test_unet_filters(unet: UNet) -> None:
    encoder = [m for part in (unet.encoder, unet.bottom) for m in _conv_outs(part)]
    assert encoder == [32, 32, 64, 64, 128, 128, 256, 256, 512, 512]
    assert _conv_outs(unet.decoder) + [unet.head.out_channels] == [256, 256, 128, 128, 64, 64, 32, 32, 1]
    assert [m.out_channels for m in unet.ups] == [256, 128, 64, 32]
    convs = [m for m in unet.modules() if type(m) is nn.Conv2d]
    assert [m.kernel_size for m in convs] == [(3, 3)] * 18 + [(1, 1)]
    assert all(m.kernel_size == (2, 2) and m.stride == (2, 2) for m in unet.ups)
    assert convs[0].in_channels == 5


def test_unet_base_filters_scales_every_layer() -> None:
    small = UNet(base_filters=16)
    encoder = _conv_outs(small.encoder) + _conv_outs(small.bottom)
    assert encoder == [16, 16, 32, 32, 64, 64, 128, 128, 256, 256]
    assert _conv_outs(small.decoder) == [128, 128, 64, 64, 32, 32, 16, 16]


# --- ResU-Net: 7 pre-activation units + head = 15 layers ----------------------------------------------------


def test_resunet_counts_match_paper(resunet: ResUNet) -> None:
    assert paper_conv_count(resunet) == 15
    assert len(resunet.units()) == 7
    # Every unit changes width or size, so every shortcut is a projection (not counted by the paper).
    assert _count(resunet, Projection) == 7
    assert _count(resunet, nn.Conv2d) == 15 + 7
    assert _count(resunet, nn.ConvTranspose2d) == 3
    assert _count(resunet, nn.MaxPool2d) == 0
    assert resunet.output_stride == 8


def test_resunet_filters(resunet: ResUNet) -> None:
    outs = [m.out_channels for m in resunet.paper_conv_layers()]
    assert outs == [64, 64, 128, 128, 256, 256, 512, 512, 256, 256, 128, 128, 64, 64, 1]
    assert [m.out_channels for m in resunet.ups] == [256, 128, 64]
    assert ResUNet(base_filters=32).paper_conv_layers()[7].out_channels == 256


def test_resunet_units_are_pre_activation(resunet: ResUNet) -> None:
    kinds = lambda unit: [type(m) for m in unit.body]  # noqa: E731
    first, *rest = resunet.units()
    assert kinds(first) == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d]
    for unit in rest:
        assert kinds(unit) == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d]
    projection = first.shortcut
    assert isinstance(projection, Projection)
    assert [type(m) for m in projection] == [nn.Conv2d, nn.BatchNorm2d]
    assert projection[0].kernel_size == (1, 1)


def test_resunet_downsamples_in_units_2_3_and_bridge(resunet: ResUNet) -> None:
    strided = sorted(
        name
        for name, m in resunet.named_modules()
        if type(m) is nn.Conv2d and m.kernel_size == (3, 3) and m.stride == (2, 2)
    )
    assert strided == ["bridge.body.2", "encoder.1.body.2", "encoder.2.body.2"]
    sizes: list[int] = []
    record = lambda _m, _i, out: sizes.append(out.shape[-1])  # noqa: E731
    hooks = [unit.register_forward_hook(record) for unit in resunet.units()]
    try:
        with torch.no_grad():
            resunet.eval()(torch.zeros(1, 5, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    assert sizes == [64, 32, 16, 8, 16, 32, 64]


def test_identity_shortcut_when_shape_kept() -> None:
    unit = ResidualUnit(8, 8, stride=1)
    assert isinstance(unit.shortcut, nn.Identity)
    for m in unit.body:
        if isinstance(m, nn.Conv2d):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(unit(x), x)


# --- any input size -----------------------------------------------------------------------------------------

MODEL_NAMES = ["unet", "resunet", "smp_unet"]


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("window", [32, 64, 128])
def test_window_shapes(name: str, window: int, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue({"unet": "unet", "resunet": "resunet", "smp_unet": "smp_model"}[name])
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 5, window, window))
    assert out.shape == (2, 1, window, window)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("in_channels", [5, 7])
def test_full_area_tile_is_padded_and_cropped(name: str, in_channels: int) -> None:
    model = build_model(name, in_channels=in_channels).eval()
    assert 157 % model.output_stride and 203 % model.output_stride
    with torch.no_grad():
        out = model(torch.randn(1, in_channels, 157, 203))
    assert out.shape == (1, 1, 157, 203)
    assert torch.isfinite(out).all()


def test_pad_to_multiple() -> None:
    x = torch.arange(157 * 203, dtype=torch.float32).reshape(1, 1, 157, 203)
    padded, size = pad_to_multiple(x, 16)
    assert padded.shape[-2:] == (160, 208) and size == (157, 203)
    assert torch.equal(padded[..., :157, :203], x)  # bottom/right only: pixel (0, 0) stays on the grid
    assert padded[0, 0, 157, 0] == x[0, 0, 155, 0]  # reflected, not zero
    tiny, _ = pad_to_multiple(torch.ones(1, 1, 3, 5), 16)  # too small to reflect: replicated
    assert tiny.shape[-2:] == (16, 16) and torch.equal(tiny, torch.ones_like(tiny))
    same, _ = pad_to_multiple(x[..., :144, :192], 16)
    assert same.shape[-2:] == (144, 192)


def test_forward_pads_bottom_right_and_crops(unet: UNet) -> None:
    x = torch.randn(1, 5, 50, 60)
    padded, _ = pad_to_multiple(x, 16)
    with torch.no_grad():
        direct, manual = unet.eval()(x), unet(padded)[..., :50, :60]
    assert torch.allclose(direct, manual, atol=1e-6)


# --- translation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model_cls", "stride", "margin"), [(UNet, 16, 100), (ResUNet, 8, 40)])
def test_shift_by_output_stride_is_equivariant_away_from_borders(
    model_cls: type, stride: int, margin: int
) -> None:
    """Shifting the input by the total stride shifts the logits, wherever the borders are out of reach.

    The margins are half the receptive fields worked out by hand: U-Net 1 + 4 + 1 + 8 + 2 + 16 + 4 + 32 + 8 +
    64 (bottom) + 32 + 16 + 8 + 4 = 200 px; ResU-Net 1 + 4 + 6 + 12 + 24 (bridge) + 16 + 8 + 4 = 75 px.
    A shift of half the stride breaks the equality: the pooling grid no longer lines up.
    """
    torch.manual_seed(0)
    model = model_cls().eval()
    size = -(-(2 * margin + 3 * stride) // stride) * stride  # a multiple of the stride: no padding
    x = torch.randn(1, 5, size + stride, size + stride)
    inner = slice(margin, size - stride - margin)
    with torch.no_grad():
        base = model(x[..., :size, :size])[..., stride:, stride:]
        shifted = model(x[..., stride:, stride:])[..., : size - stride, : size - stride]
        half = stride // 2
        misaligned = model(x[..., half : half + size, half : half + size])[..., : size - half, : size - half]
        base_half = model(x[..., :size, :size])[..., half:, half:]
    assert torch.allclose(base[..., inner, inner], shifted[..., inner, inner], atol=1e-5)
    aligned = (base[..., inner, inner] - shifted[..., inner, inner]).abs()
    broken = (base_half[..., inner, inner] - misaligned[..., inner, inner]).abs()
    floor = max(10 * float(aligned.max()), 1e-6)  # ten times the aligned error (which is round-off or zero)
    assert (broken > floor).float().mean() > 0.95  # misaligned, (nearly) every inner logit moves


def test_64_window_is_not_translation_invariant(unet: UNet) -> None:
    """On a 64 px window the U-Net's 200 px receptive field reaches a border from every pixel.

    So a 16 px shift changes every logit: a patch's prediction depends on where the patch grid falls, and
    stitching window predictions is not the same as one pass over the whole area.
    """
    torch.manual_seed(1)
    x = torch.randn(1, 5, 64, 80)
    with torch.no_grad():
        a = unet.eval()(x[..., :64])[..., 16:]
        b = unet(x[..., 16:])[..., :48]
    change = (a - b).abs()
    assert a.shape == b.shape == (1, 1, 64, 48)
    assert (change > 1e-5).float().mean() > 0.99  # (nearly) every logit moves...
    assert change.mean() > 0.1 * a.std()  # ...and by a sizeable share of the logits' spread, not round-off


# --- training and rebuilding --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = build_model(name).train()
    out = model(torch.randn(2, 5, 32, 32))
    nn.functional.binary_cross_entropy_with_logits(out, torch.rand_like(out).round()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_recorded_config_rebuilds_the_model(name: str) -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml"), resolve=True)
    complete = net_config(cfg["net"], in_channels=7)
    model = build_net(complete)
    assert complete["in_channels"] == 7 and next(model.parameters()).shape[1] == 7
    twin = build_net(dict(complete))
    twin.load_state_dict(model.state_dict())  # strict: same layers, same shapes
    wider = build_net(net_config(cfg["net"], in_channels=8))
    with pytest.raises(RuntimeError, match="size mismatch"):
        wider.load_state_dict(model.state_dict())


@pytest.mark.parametrize(("target", "filled"), [
    ("slidemap.models.UNet", {"in_channels": 6, "out_channels": 1}),
    ("segmentation_models_pytorch.FPN", {"in_channels": 6, "classes": 1}),
    ("slidemap.models.SmpModel", {"in_channels": 6}),  # fixes classes=1 itself
])
def test_channel_counts_are_filled_in_under_the_classes_own_names(target: str, filled: dict) -> None:
    complete = net_config({"_target_": target, "encoder_weights": None} if "smp" in target.lower() or "FPN" in target
                          else {"_target_": target}, in_channels=6)
    assert {k: complete[k] for k in filled} == filled
    assert not {"classes", "out_channels"} - set(filled) & set(complete)  # no argument the class does not take


@pytest.mark.parametrize(("config", "message"), [
    ({}, "has no _target_"),
    ({"_target_": "slidemap.models.SegNet"}, "cannot import network class 'slidemap.models.SegNet'"),
    ({"_target_": "os.system"}, "'os.system' is not a torch.nn.Module class"),
    ({"_target_": "torch.nn.ReLU"}, "takes no input channel count"),
])
def test_configs_that_are_not_networks_are_refused(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        net_config(config, in_channels=5)


def test_a_constructor_error_names_the_class() -> None:
    with pytest.raises(ValueError, match="cannot build slidemap.models.UNet: .*unexpected keyword"):
        build_net({"_target_": "slidemap.models.UNet", "in_channels": 5, "depth_of_field": 3})


def test_smp_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    assert inspect.signature(SmpModel).parameters["encoder_weights"].default is None

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("SmpModel tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr("segmentation_models_pytorch.encoders.hf_hub_download", no_network)
    model = SmpModel(arch="FPN", encoder_name="resnet18", in_channels=5)
    assert model.output_stride == 32 and torch.isfinite(model(torch.randn(1, 5, 64, 64))).all()
