from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from annotation_schema import load_standard
from hae_data.records import ARROW_SCHEMA, record_to_row
from hae_model.data import (
    IGNORE_INDEX,
    LevelTokenError,
    SampleEncoder,
    ShardStream,
    check_level_tokens,
    collate_inference,
    collate_train,
    count_rows,
    list_row_groups,
)
from hae_model.tiny import build_tokenizer
from tests.model.fixtures import make_records


@pytest.fixture(scope="module")
def encoder(tiny_dir):
    from transformers import AutoImageProcessor, AutoTokenizer

    return SampleEncoder(
        AutoTokenizer.from_pretrained(tiny_dir),
        AutoImageProcessor.from_pretrained(tiny_dir),
        image_seq_length=4,
        tile_size=56,
        max_tiles=1,
    )


def _ids(stream):
    return [r["image_id"] for r in stream]


def test_row_groups_and_errors(small_export, tmp_path):
    groups = list_row_groups(small_export, "train")
    assert len(groups) > 4  # small row groups: the streaming code sees several
    assert {g.part for g in groups} == {"overall", "fine_grained"}
    train = count_rows(groups)
    test = count_rows(list_row_groups(small_export, "test"))
    quick = count_rows(list_row_groups(small_export, "quick"), quick_only=True)
    assert train + test == 44 and 0 < quick <= test
    assert count_rows(list_row_groups(small_export, "train", ["overall"])) < train
    with pytest.raises(FileNotFoundError, match="no rows for split"):
        list_row_groups(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        list_row_groups(small_export, "validation")
    with pytest.raises(ValueError, match="unknown parts"):
        list_row_groups(small_export, "train", ["faces"])


@pytest.mark.parametrize("world", [1, 2, 3, 50])
def test_every_row_once_per_epoch_over_all_consumers(small_export, world):
    groups = list_row_groups(small_export, "train")
    everything = sorted(_ids(ShardStream(groups, lambda r: r)))
    assert len(everything) == len(set(everything)) == count_rows(groups)
    seen = []
    for rank in range(world):
        seen += _ids(ShardStream(groups, lambda r: r, rank=rank, world_size=world, shuffle=True))
    assert sorted(seen) == everything


def test_shuffle_is_seeded_and_changes_per_epoch(small_export):
    groups = list_row_groups(small_export, "train")
    n = count_rows(groups)

    def first(seed, k):
        out = []
        for row in ShardStream(
            groups, lambda r: r, shuffle=True, infinite=True, seed=seed, shuffle_buffer=8
        ):
            out.append(row["image_id"])
            if len(out) == k:
                return out

    a, b = first(0, 2 * n), first(0, 2 * n)
    assert a == b
    assert sorted(a[:n]) == sorted(a[n:])  # each epoch is the whole split
    assert a[:n] != a[n:]  # ... in a new order
    assert first(1, n) != a[:n]
    assert a[:n] != sorted(a[:n])


def test_resume_skips_exactly_what_was_consumed(small_export):
    groups = list_row_groups(small_export, "train")

    def loader(skip):
        stream = ShardStream(
            groups,
            lambda r: r,
            shuffle=True,
            seed=5,
            shuffle_buffer=4,
            batch_size=3,
            skip_batches=skip,
        )
        return DataLoader(stream, batch_size=3, num_workers=2, collate_fn=lambda b: b)

    full = [[r["image_id"] for r in b] for b in loader(0)]
    k = 4
    resumed = [[r["image_id"] for r in b] for b in loader(k)]
    first_part = [i for b in full[:k] for i in b]
    rest = [i for b in resumed for i in b]
    assert sorted(first_part + rest) == sorted(i for b in full for i in b)
    assert not set(first_part) & set(rest)


def test_level_words_must_be_single_tokens():
    words = load_standard().level_words
    with pytest.raises(LevelTokenError, match="single token") as err:
        check_level_tokens(build_tokenizer(vocab_size=300))  # too few merges for whole words
    assert any(repr(w) in str(err.value) for w in words)


def test_training_sample_prompt_labels_and_positions(encoder, small_export):
    std = load_standard()
    rows = list(ShardStream(list_row_groups(small_export, "train"), lambda r: r))
    overall = next(r for r in rows if r["part"] == "overall")
    fine = next(r for r in rows if r["part"] == "fine_grained")
    tok = encoder.tokenizer
    for row in (overall, fine):
        s = encoder.encode_train(row)
        ids, labels = s["input_ids"].tolist(), s["labels"].tolist()
        n_prompt = s["head_pos"] + 1
        assert all(x == IGNORE_INDEX for x in labels[:n_prompt])
        assert labels[n_prompt:] == ids[n_prompt:]
        assert tok.decode(ids[n_prompt:]) == row["answer"] + tok.eos_token
        prompt = tok.decode(ids[:n_prompt])
        assert prompt.count("<IMG_CONTEXT>") == 4 and prompt.count("<img>") == 1
        assert row["question"] in prompt and prompt.endswith("assistant\n")
        assert s["pixel_values"].shape == (1, 3, 56, 56)
        assert s["is_overall"] == (row["part"] == "overall")
    s = encoder.encode_train(overall)
    # The token after level_pos is the level word of the answer.
    level_token = s["input_ids"][s["level_pos"] + 1].item()
    assert level_token == encoder.level_token_ids[std.level_words.index(overall["level"])]
    assert encoder.encode_train(fine)["level_pos"] == -1
    assert encoder.encode_train(fine)["dimension_scores"].tolist() == pytest.approx(
        fine["dimension_scores"]
    )


def test_dynamic_tiling(tiny_dir, encoder):
    tiled = SampleEncoder(
        encoder.tokenizer, encoder.image_processor, image_seq_length=4, tile_size=56, max_tiles=6
    )
    wide = Image.fromarray(np.zeros((56, 170, 3), dtype=np.uint8))
    pixels = tiled.tiles(wide)
    assert pixels.shape == (4, 3, 56, 56)  # a 3 x 1 grid and the thumbnail
    assert encoder.tiles(wide).shape == (1, 3, 56, 56)
    ids = tiled.prompt_ids("Rate it.", pixels.shape[0])
    assert sum(i == tiled.image_token_id for i in ids) == 16


def test_collate_pads_and_keeps_tiles_in_order(encoder, small_export):
    rows = list(ShardStream(list_row_groups(small_export, "train"), lambda r: r))[:5]
    samples = [encoder.encode_train(r) for r in rows]
    batch = collate_train(samples, encoder.pad_id)
    lengths = [len(s["input_ids"]) for s in samples]
    assert batch["input_ids"].shape == (5, -(-max(lengths) // 8) * 8)
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["pixel_values"].shape == (5, 3, 56, 56)
    assert torch.equal(batch["pixel_values"][2], samples[2]["pixel_values"][0])
    inf = collate_inference([encoder.encode_inference(r) for r in rows], encoder.pad_id)
    assert inf["input_ids"].shape[0] == 10 and inf["size"] == 5
    assert inf["level_pos"].tolist() == [
        len(encoder.encode_inference(r)["overall_ids"][0]) - 1 for r in rows
    ]


def _write_shard(folder: Path, rows):
    folder.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=ARROW_SCHEMA), folder / "train-00000-of-00001.parquet"
    )


def test_bad_rows_are_reported_not_fatal(encoder, tmp_path, caplog):
    recs = make_records(tmp_path / "img", n_overall=6, n_fine=0)
    rows = [record_to_row(r, Path(r.image_path).read_bytes()) for r in recs]
    rows[1]["image"]["bytes"] = b"not an image"
    rows[2]["score"] = 1.7
    rows[3]["answer"] = None
    _write_shard(tmp_path / "export" / "data" / "overall", rows)
    groups = list_row_groups(tmp_path / "export", "train")
    kept = list(ShardStream(groups, encoder.encode_train))
    assert len(kept) == 3
    assert "skipping row" in caplog.text
    with_errors = list(ShardStream(groups, encoder.encode_inference, keep_errors=True))
    errors = [s for s in with_errors if "error" in s]
    assert len(errors) == 2  # the text answer is not needed for scoring
    assert any("not_an_image" in e["error"] for e in errors)
    batch = collate_inference(with_errors, encoder.pad_id)
    assert batch["size"] == 4 and len(batch["errors"]) == 2
    empty = collate_inference(errors, encoder.pad_id)
    assert empty["size"] == 0 and "input_ids" not in empty
    with pytest.raises(ValueError, match="at least one valid"):
        collate_train([{"error": "x"}], encoder.pad_id)


def test_quick_split_reads_only_quick_rows(small_export):
    groups = list_row_groups(small_export, "quick")
    rows = list(ShardStream(groups, lambda r: r, quick_only=True))
    assert rows and all(r["quick"] for r in rows)
    assert len(rows) == count_rows(groups, quick_only=True)
