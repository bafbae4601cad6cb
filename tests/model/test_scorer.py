"""The model for its users (issue 14): the Python scorer, ``score`` on folders into files and on
the 1-5 scale, ``--dtype``, ``evaluate --predictions`` and an empty split as an error.

One untrained model folder (``from_base`` + ``save_pretrained``: what training writes, with
random heads) serves every test; what they check does not depend on the scores being good.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from annotation_schema import load_standard
from hae_model import load_scorer
from hae_model.config import resolve_dtype
from hae_model.model import HumanAesExpert

STD = load_standard()
KEYS = {"image", "image_id", "overall", "overall_from", "dimensions", "heads", "levels", "scale"}


@pytest.fixture(scope="module")
def model_dir(tiny_dir, tmp_path_factory):
    model, encoder = HumanAesExpert.from_base(str(tiny_dir), max_tiles=1)
    return model.save_pretrained(tmp_path_factory.mktemp("hae") / "model", encoder)


@pytest.fixture(scope="module")
def scorer(model_dir):
    return load_scorer(model_dir, device="cpu", text=False, batch_size=2)


@pytest.fixture(scope="module")
def images(small_export):
    return sorted((small_export.parent / "images").glob("*.png"))[:3]


def test_one_scorer_scores_paths_pil_images_and_bad_inputs_in_order(scorer, images, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    float_image = Image.fromarray(np.zeros((8, 8), dtype=np.float32), mode="F")
    inputs = [
        images[0],
        Image.open(images[1]),
        broken,
        tmp_path / "missing.png",
        float_image,
        str(images[1]),
        Image.open(images[2]).convert("LA"),
    ]

    results = scorer(inputs)

    assert [r["image"] for r in results] == [
        str(images[0]),
        "<image 1>",
        str(broken),
        str(tmp_path / "missing.png"),
        "<image 4>",
        str(images[1]),
        "<image 6>",
    ]
    assert [i for i, r in enumerate(results) if "error" in r] == [2, 3, 4]
    assert "missing_file" in results[3]["error"] and "mode F" in results[4]["error"]
    for r in (results[0], results[1], results[5], results[6]):
        assert set(r) == KEYS
        assert 0 <= r["overall"] <= 1 and r["scale"] == "unit"
        assert list(r["dimensions"]) == list(STD.names)
        assert set(r["heads"]) == {"lm", "regression", "expert", "metavoter"}
        assert r["overall"] == r["heads"][r["overall_from"]]
        assert set(r["levels"]) == {"overall", *STD.names}
    # A PIL image and its file are the same image: the same scores, whatever the batch.
    assert results[1]["heads"] == pytest.approx(results[5]["heads"], abs=1e-5)
    # One image (not a list) is a list of one result.
    assert scorer(Image.open(images[0]))[0]["overall"] == pytest.approx(results[0]["overall"])


def test_text_answers_and_the_five_point_scale(model_dir, scorer, images):
    five = load_scorer(model_dir, device="cpu", scale="five", text=True)

    unit, mos = scorer(images[:1])[0], five(images[:1])[0]

    assert mos["scale"] == "five"
    assert mos["overall"] == pytest.approx(1 + 4 * unit["overall"], abs=1e-5)
    assert mos["dimensions"]["Overall Aesthetic"] == pytest.approx(
        1 + 4 * unit["dimensions"]["Overall Aesthetic"], abs=1e-5
    )
    assert mos["levels"] == unit["levels"]
    assert isinstance(mos["answer"], str) and isinstance(mos["fine_grained_answer"], str)


def test_dtype_is_the_backbones_and_the_heads_stay_float32(model_dir, scorer, images):
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("fp8", torch.device("cpu"))

    bf16 = load_scorer(model_dir, device="cpu", dtype="bfloat16", text=False)

    assert next(bf16.model.base_model.parameters()).dtype == torch.bfloat16
    heads = [*bf16.model.regression.parameters(), *bf16.model.expert.parameters()]
    assert {p.dtype for p in heads} == {torch.float32}
    got, want = bf16(images[:2]), scorer(images[:2])
    for a, b in zip(got, want, strict=True):
        assert a["overall"] == pytest.approx(b["overall"], abs=0.05)


def test_bad_arguments_fail_before_the_model_loads(model_dir, tmp_path):
    with pytest.raises(ValueError, match="scale"):
        load_scorer(model_dir, scale="ten")
    with pytest.raises(ValueError, match="dtype"):
        load_scorer(model_dir, dtype="fp8")
    with pytest.raises(ValueError, match="questions"):
        load_scorer(model_dir, questions="some")
    # Checked before the folder is even looked at (it holds no model here).
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        load_scorer(tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="max_tiles must be >= 1"):
        load_scorer(tmp_path, max_tiles=0)
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        load_scorer(tmp_path)


def test_score_cli_reads_folders_and_writes_csv_and_jsonl(model_dir, images, tmp_path, capsys):
    from hae_model.score import main

    folder = tmp_path / "photos"
    (folder / "b").mkdir(parents=True)
    shutil.copy(images[0], folder / "b" / "z.png")
    shutil.copy(images[1], folder / "a.PNG")
    (folder / "notes.txt").write_text("not an image")
    (folder / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    base = ["--model", str(model_dir), "--no-text", "--device", "cpu"]

    assert main([*base, "--scale", "five", "--output", str(tmp_path / "s.csv"), str(folder)]) == 1
    assert main([*base, "--output", str(tmp_path / "s.jsonl"), str(images[2])]) == 0

    with (tmp_path / "s.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == [
        str(folder / "a.PNG"),
        str(folder / "b" / "broken.jpg"),
        str(folder / "b" / "z.png"),
    ]
    assert rows[1]["error"] and not rows[1]["overall"]
    assert 1 <= float(rows[0]["overall"]) <= 5 and rows[0]["scale"] == "five"
    assert rows[0]["overall_level"] in STD.level_words
    assert {name for name in STD.names} <= set(rows[0])
    lines = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["image"] for r in lines] == [str(images[2])] and set(lines[0]) == KEYS
    assert capsys.readouterr().out == ""  # with --output, nothing on stdout

    empty = tmp_path / "empty"
    empty.mkdir()
    for bad, message in [
        (["--output", str(tmp_path / "s.txt"), str(images[0])], "must end in .jsonl or .csv"),
        ([str(empty)], "a folder without image files"),
        (["--dtype", "fp8", str(images[0])], "invalid choice"),
        (["--max-tiles", "0", str(images[0])], "max_tiles must be >= 1"),
        (["--batch-size", "0", str(images[0])], "batch_size must be >= 1"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([*base, *bad])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_evaluate_writes_every_heads_prediction_per_image(model_dir, small_export, tmp_path):
    from hae_model.evaluate import evaluate

    preds = tmp_path / "preds.jsonl"
    report = evaluate(
        model_dir,
        small_export,
        split="test",
        text=False,
        num_workers=0,
        device="cpu",
        predictions=preds,
        output=tmp_path / "report.json",
    )

    rows = [json.loads(x) for x in preds.read_text().splitlines()]
    assert len(rows) == report["images"] + len(report["skipped"]) > 0
    for row in rows:
        assert {"image_id", "source", "score", "level", "overall"} <= set(row)
        assert {"lm", "regression", "expert", "metavoter"} <= set(row)
        assert list(row["dimensions"]) == list(STD.names)
    fine = [r for r in rows if r["part"] == "fine_grained"]
    assert fine and all(list(r["dimension_scores"]) == list(STD.names) for r in fine)
    assert report["dtype"] == "float32"
    # The last evaluation stays with the model, for the card of a push.
    assert json.loads((Path(model_dir) / "evaluation.json").read_text())["split"] == "test"


def test_an_empty_split_is_an_error(model_dir, tmp_path, capsys):
    from hae_data.export import export_dataset
    from hae_model.evaluate import main
    from tests.model.fixtures import make_records

    recs = make_records(tmp_path / "images", n_overall=16, n_fine=0, test_fraction=0.5)
    assert any(rec.split == "test" for rec in recs)
    for rec in recs:
        rec.quick = False
    export_dataset(recs, [], tmp_path / "export")
    argv = ["--model", str(model_dir), "--data", str(tmp_path / "export"), "--no-text"]

    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--split", "quick", "--output", str(tmp_path / "r.json")])

    assert exit_info.value.code == 2
    assert "no test row is flagged quick" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--output", str(tmp_path / "r.json"), "--predictions", "p.parquet"])
    assert "--predictions must end in .jsonl or .csv" in capsys.readouterr().err
