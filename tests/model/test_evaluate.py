import numpy as np
import pytest
import torch

from annotation_schema import load_standard
from hae_data.levels import score_to_level
from hae_model.evaluate import build_report, evaluate, main, markdown_report
from hae_model.inference import levels_of, parse_fine_grained_answer, parse_overall_answer
from hae_model.metrics import level_metrics, regression_metrics

STD = load_standard()


def test_parse_overall_answer():
    for word in STD.level_words:
        assert parse_overall_answer(STD.overall_answer(word)) == word
    assert parse_overall_answer("The aesthetics of the image is GOOD!") == "good"
    assert parse_overall_answer("nmage Fac mage") is None
    assert parse_overall_answer("good or bad") is None  # two levels: no guess
    assert parse_overall_answer("") is None


def test_parse_fine_grained_answer():
    levels = [STD.level_words[i % 5] for i in range(12)]
    parsed = parse_fine_grained_answer(STD.fine_grained_answer(levels))
    assert parsed == dict(zip(STD.names, levels, strict=True))
    partial = parse_fine_grained_answer("Outfit: good\nLooks: great\nNo colon\nBody Shape: poor")
    assert partial == {"Outfit": "good", "Body Shape": "poor"}


def _items(n, seed=0, text=True):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        score = float(rng.uniform(0, 1))
        fine = i % 3 == 0
        dims = [float(x) for x in rng.uniform(0, 1, 12)] if fine else None
        item = {
            "image_id": f"img{i}",
            "source": "humanbeauty_50k" if fine else ("ava", "baid")[i % 2],
            "part": "fine_grained" if fine else "overall",
            "score": score,
            "level": score_to_level(score),
            "dimension_scores": dims,
            "lm": float(rng.uniform(0, 1)),
            "regression": float(np.clip(score + rng.normal(0, 0.1), 0, 1)),
            "expert": float(rng.uniform(0, 1)),
            "metavoter": float(np.clip(score + rng.normal(0, 0.05), 0, 1)),
            "overall": float(np.clip(score + rng.normal(0, 0.05), 0, 1)),
            "dimensions": [float(x) for x in rng.uniform(0, 1, 12)],
        }
        if text:
            item["answer_level"] = None if i % 4 == 0 else score_to_level(score)
            item["fine_grained_levels"] = {STD.names[0]: "good"} if fine else {}
        items.append(item)
    return items


def test_report_per_head_per_source_and_total():
    items = _items(40)
    items.append({"image_id": "x", "source": "ava", "error": "ImageDecodeError: truncated"})
    report = build_report(items, text=True)
    assert report["images"] == 40 and len(report["skipped"]) == 1
    total = report["total"]
    good = [it for it in items if "error" not in it]
    target = [it["score"] for it in good]
    for head in ("lm", "regression", "expert", "metavoter"):
        pred = [it[head] for it in good]
        expected = regression_metrics(pred, target)
        expected.update(
            {
                k: v
                for k, v in level_metrics(
                    [score_to_level(p) for p in pred], [it["level"] for it in good]
                ).items()
                if k != "n"
            }
        )
        assert total["heads"][head] == pytest.approx(expected)
    assert set(report["per_source"]) == {"ava", "baid", "humanbeauty_50k"}
    assert sum(g["n"] for g in report["per_source"].values()) == 40
    fine = [it for it in good if it["dimension_scores"] is not None]
    mae0 = np.mean([abs(it["dimensions"][0] - it["dimension_scores"][0]) for it in fine])
    assert total["dimensions"]["n"] == len(fine)
    assert total["dimensions"]["mae"][STD.names[0]] == pytest.approx(mae0)
    assert "dimensions" not in report["per_source"]["ava"]
    text = total["text"]
    assert text["unparseable"] == 10 and text["n_parsed"] == 30 and text["accuracy"] == 1.0
    assert text["fine_grained_unparseable"] == len(fine)
    assert text["fine_grained_level_accuracy"][STD.names[1]] is None
    md = markdown_report(report, "t")
    assert md.count("| total |") == 4 + 1 + 1  # four heads, dimension MAE, text answers
    assert "| ava | MetaVoter |" in md


def test_report_without_text_and_levels_of():
    report = build_report(_items(6, text=False), text=False)
    assert "text" not in report["total"]
    item = _items(1)[0]
    levels = levels_of(item)
    assert levels["metavoter"] == score_to_level(item["metavoter"])
    assert levels["overall"] == score_to_level(item["overall"])
    assert set(levels) == {"lm", "regression", "expert", "metavoter", "overall", *STD.names}


class _PerfectModel:
    """Stands in for a trained model: every head predicts the exported scores (in float32,
    as a real one does) and ``predict`` ignores the images."""

    def eval(self):
        return self

    def predict(self, batch):
        from hae_model.model import Prediction

        targets = batch["targets"]
        score = torch.tensor([t["score"] for t in targets], dtype=torch.float32)
        dims = torch.tensor([t["dimension_scores"] or [0.0] * 12 for t in targets])
        return Prediction(score, score, score, score, dims, score)


def test_evaluation_reads_exported_levels_not_float32_copies(tiny_dir, tmp_path):
    """Boundary scores (0.2, 0.4, 0.6, 0.8) are bad/poor/fair/good in the export; a float32
    copy of them (0.6000000238...) bins one level up. A model whose answers name exactly the
    exported levels must score level accuracy 1."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoImageProcessor, AutoTokenizer

    from hae_data.schema import ARROW_SCHEMA, level_words, record_to_row
    from hae_model.data import list_row_groups
    from hae_model.inference import inference_loader, score_batches
    from hae_model.processing import SampleEncoder
    from tests.model.fixtures import make_records

    encoder = SampleEncoder(
        AutoTokenizer.from_pretrained(tiny_dir),
        AutoImageProcessor.from_pretrained(tiny_dir),
        image_seq_length=4,
        tile_size=56,
        max_tiles=1,
    )
    rows = []
    for i, rec in enumerate(make_records(tmp_path / "img", n_overall=0, n_fine=8)):
        dims = [(0.2, 0.4, 0.6, 0.8)[(i + k) % 4] for k in range(12)]
        rec.dimension_scores, rec.score = dims, dims[11]
        rec.level, rec.dimension_levels = (
            score_to_level(rec.score),
            [score_to_level(v) for v in dims],
        )
        rows.append(record_to_row(rec, Path(rec.image_path).read_bytes()))
    folder = tmp_path / "export" / "data" / "fine_grained"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=ARROW_SCHEMA), folder / "test-0.parquet")
    rows = [level_words(dict(r)) for r in rows]  # the export's ClassLabel indices as words
    loader = inference_loader(list_row_groups(tmp_path / "export", "test"), encoder, batch_size=3)
    items = list(score_batches(_PerfectModel(), encoder, loader, device=torch.device("cpu")))
    for item, row in zip(items, rows, strict=True):
        assert item["score"] == row["score"] and item["level"] == row["level"]
        assert item["dimension_scores"] == row["dimension_scores"]
        assert item["dimension_levels"] == row["dimension_levels"]
        item["answer_level"] = row["level"]
        item["fine_grained_levels"] = dict(zip(STD.names, row["dimension_levels"], strict=True))
    text = build_report(items, text=True)["total"]["text"]
    assert text["accuracy"] == 1.0
    assert set(text["fine_grained_level_accuracy"].values()) == {1.0}


def test_an_item_without_an_exported_level_is_skipped_not_rebinned():
    items = _items(4, text=False)
    items[1]["level"] = None
    report = build_report(items, text=False)
    assert report["images"] == 3 and "no exported level" in report["skipped"][0]["error"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"num_workers": -1}, "num_workers must be >= 0"),
        ({"precision": "fp16"}, "precision must be one of"),
        ({"questions": "some"}, "questions must be one of"),
        ({"max_tiles": 0}, "max_tiles must be >= 1"),
    ],
)
def test_evaluate_rejects_bad_options_before_anything_loads(tmp_path, option, message):
    # Neither folder exists: a check made after looking for them would fail differently.
    with pytest.raises(ValueError, match=message):
        evaluate(tmp_path / "no-model", tmp_path / "no-data", **option)


def test_evaluate_cli_reports_bad_options_as_usage_errors(tmp_path, capsys):
    argv = ["--model", str(tmp_path), "--data", str(tmp_path), "--output", "r.json"]
    for bad, message in [
        (["--batch-size", "0"], "batch_size must be >= 1"),
        (["--max-tiles", "0"], "max_tiles must be >= 1"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, *bad])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
