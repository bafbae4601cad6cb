"""``python -m hae_data.faces``: one line per input, right decisions, clear argument errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hae_data.faces import cuda_available
from hae_data.faces.cli import main
from hae_data.faces.retinaface import RetinaFace
from tests.faces.fixtures import BROKEN_AND_ODD
from tests.faces.test_retinaface import unfused_state_dict

REPO = Path(__file__).resolve().parents[2]
PHOTO_REASONS = {
    "astronaut.jpg": None,
    "camera.png": None,
    "coffee.jpg": "no_face",
    "group.jpg": "multi_face",
}
KEYS = {"path", "keep", "reason", "faces", "width", "height", "image_id", "detail"}


def test_json_lines_for_photos_and_every_broken_kind(
    photos: dict[str, Path], odd_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # In this process: ``python -m hae_data.faces`` is ``sys.exit(main())``, and a subprocess
    # would spend most of its time importing.
    photo_dir = photos["astronaut"].parent
    odd_dir = odd_files["empty.jpg"].parent
    args = ["--json", "--device", "cpu", "--batch-size", "3"]
    assert main([*args, str(photo_dir), str(odd_dir), str(photos["astronaut"])]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    expected = {**PHOTO_REASONS, **{n: r for n, (_, r) in BROKEN_AND_ODD.items()}}
    assert len(lines) == len(expected) + 1  # the astronaut was named twice
    assert lines[-1]["path"] == str(photos["astronaut"])
    for line in lines:
        assert set(line) == KEYS
        name = Path(line["path"]).name
        assert line["reason"] == expected[name], line
        assert line["keep"] is (expected[name] is None)
        if line["width"] is None:
            assert line["faces"] == [] and line["image_id"] is None and line["detail"]
            continue
        for face in line["faces"]:
            assert set(face) == {"box", "score", "landmarks"}
            x1, y1, x2, y2 = face["box"]
            assert 0 <= x1 < x2 <= line["width"] and 0 <= y1 < y2 <= line["height"]
            assert len(face["landmarks"]) == 10 and 0.5 <= face["score"] <= 1
    by_name = {Path(line["path"]).name: line for line in lines}
    for name in ("exif6.jpg", "exif8.jpg"):
        assert (by_name[name]["width"], by_name[name]["height"]) == (400, 512)
    assert (by_name["large.jpg"]["width"], by_name["large.jpg"]["height"]) == (2048, 2048)
    assert sum(f["score"] >= 0.9 for f in by_name["group.jpg"]["faces"]) == 3
    assert "summary: 17 images, 11 kept" in err


def test_table_and_folder_walking(
    tmp_path: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    shutil.copy(photos["astronaut"], folder / "sub" / "a.jpg")
    shutil.copy(photos["coffee"], folder / ".hidden" / "c.jpg")
    (folder / "README.txt").write_text("notes")
    assert main(["--device", "cpu", "--quiet", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["keep", "reason", "faces", "best", "size", "path"]
    assert len(out) == 2 and out[1].split()[:4] == ["keep", "1", "0.999", "512x512"]
    assert main(["--device", "cpu", "--quiet", "--all-files", "--json", str(folder)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(Path(x["path"]).name, x["reason"]) for x in lines] == [
        ("README.txt", "not_an_image"),
        ("a.jpg", None),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/folder"], "no such file or folder"),
        (["--threshold", "1.5", "."], "between 0 and 1"),
        (["--batch-size", "0", "."], "must be >= 1"),
        (["--long-side", "16", "."], "must be >= 32"),
        (["--device", "tpu", "."], "device must be"),
        (["--device", "cpu", "--weights", "/no/such.pth", "."], "does not exist"),
    ],
)
def test_bad_arguments_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(cuda_available(), reason="checks the error when CUDA is missing")
def test_cuda_without_cuda_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--device", "cuda", "."])
    assert exc.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_weights_option_runs_a_checkpoint_in_torch(
    tmp_path: Path,
    photos: dict[str, Path],
    torch_net: RetinaFace,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The real MobileNet-0.25 weights saved in the biubug6 layout stand in for a checkpoint.
    path = tmp_path / "mobilenet0.25_Final.pth"
    torch.save(unfused_state_dict(torch_net), path)
    args = ["--json", "--quiet", "--device", "cpu", "--weights", str(path)]
    assert main([*args, *map(str, photos.values())]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {Path(x["path"]).name: x["reason"] for x in lines} == PHOTO_REASONS
