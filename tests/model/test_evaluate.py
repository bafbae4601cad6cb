import numpy as np
import pytest

from annotation_schema import load_standard
from hae_data.levels import score_to_level
from hae_model.evaluate import build_report, markdown_report
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
    assert set(levels) == {"lm", "regression", "expert", "metavoter", *STD.names}
