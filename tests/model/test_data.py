from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from annotation_schema import load_standard
from hae_data.schema import ARROW_SCHEMA, record_to_row
from hae_model.data import (
    ShardStream,
    TrainingStream,
    count_rows,
    deal_parts,
    list_row_groups,
)
from hae_model.processing import (
    IGNORE_INDEX,
    LevelTokenError,
    SampleEncoder,
    check_level_tokens,
    collate_inference,
    collate_train,
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
def test_every_row_once_per_pass_over_all_consumers(small_export, world):
    groups = list_row_groups(small_export, "train")
    everything = sorted(_ids(ShardStream(groups, lambda r: r)))
    assert len(everything) == len(set(everything)) == count_rows(groups)
    seen = []
    for rank in range(world):
        seen += _ids(ShardStream(groups, lambda r: r, rank=rank, world_size=world))
    assert sorted(seen) == everything


def _row(row):
    return {"id": row["image_id"], "part": row["part"]}


@pytest.fixture(scope="module")
def uneven_export(tmp_path_factory):
    """Row groups of about 37 rows and a few short ones: the sizes a real export has."""
    from tests.model.fixtures import make_export

    root = tmp_path_factory.mktemp("uneven")
    return make_export(
        root, n_overall=300, n_fine=140, seed=5, test_fraction=0.1, row_group_max_bytes=400 * 2**10
    )


def _micro_batches(stream, workers, n):
    loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=lambda b: b)
    batches = iter(loader)
    return [next(batches) for _ in range(n)]


@pytest.mark.parametrize(
    # (1, 4, 4, 1): 99 micro-batches an epoch for 4 workers, so who makes which one shifts
    "world, workers, batch, accum",
    [(1, 2, 4, 2), (2, 2, 4, 1), (3, 0, 8, 2), (1, 4, 4, 1)],
)
def test_one_epoch_is_every_training_row_once_over_ranks_and_workers(
    uneven_export, world, workers, batch, accum
):
    """An epoch's steps see each row exactly once, however uneven the row groups, with every
    micro-batch holding overall and 12-dimension rows in proportion (within one row)."""
    groups = list_row_groups(uneven_export, "train")
    assert len({g.num_rows for g in groups}) > 2
    n = count_rows(groups)
    n_overall = count_rows([g for g in groups if g.part == "overall"])
    for epoch in range(2):
        seen, sizes = [], []
        for rank in range(world):
            stream = TrainingStream(
                groups,
                _row,
                batch_size=batch,
                grad_accum=accum,
                rank=rank,
                world_size=world,
                shuffle_buffer=16,
            )
            per_rank = stream.steps_per_epoch * accum
            assert stream.steps_per_epoch == -(-n // (batch * accum * world))
            epochs = _micro_batches(stream, workers, 2 * per_rank)
            for mb in epochs[epoch * per_rank : (epoch + 1) * per_rank]:
                assert len(mb) <= batch
                seen += [r["id"] for r in mb]
                overall = sum(r["part"] == "overall" for r in mb)
                assert abs(overall - len(mb) * n_overall / n) < 1, mb
                sizes.append(len(mb))
        assert len(seen) == n and len(set(seen)) == n, f"epoch {epoch}"
        assert max(sizes) - min(sizes) <= 1


def test_training_stream_is_seeded_and_reshuffles_each_epoch(uneven_export):
    groups = list_row_groups(uneven_export, "train")

    def order(seed):
        stream = TrainingStream(groups, _row, batch_size=4, seed=seed, shuffle_buffer=8)
        per_epoch = stream.steps_per_epoch
        mbs = _micro_batches(stream, 0, 2 * per_epoch)
        ids = [r["id"] for mb in mbs for r in mb]
        return ids[: len(ids) // 2], ids[len(ids) // 2 :]

    first, second = order(0)
    assert (first, second) == order(0)
    assert sorted(first) == sorted(second) and first != second
    assert order(1)[0] != first


def test_micro_batches_can_be_empty_only_below_one_row_each(small_export):
    groups = list_row_groups(small_export, "train")
    rows = [[] for _ in groups]
    rows[0] = [0, 1, 2]  # three training rows for four micro-batches per step
    seen, empty = [], 0
    for rank in range(2):
        stream = TrainingStream(
            groups, _row, batch_size=1, grad_accum=2, rank=rank, world_size=2, rows=rows
        )
        for mb in _micro_batches(stream, 0, 2):
            seen += [r["id"] for r in mb]
            empty += not mb
    assert len(seen) == len(set(seen)) == 3 and empty == 1


def test_deal_parts_keeps_every_prefix_in_proportion():
    assert deal_parts([3, 1]) == [0, 0, 1, 0]
    dealt = deal_parts([58, 50])
    for t in range(1, len(dealt) + 1):
        assert abs(dealt[:t].count(0) - t * 58 / 108) < 1


def test_resume_skips_exactly_what_was_consumed(uneven_export):
    groups = list_row_groups(uneven_export, "train")

    def loader(skip):
        stream = TrainingStream(
            groups, _row, batch_size=3, seed=5, shuffle_buffer=4, skip_batches=skip
        )
        return _micro_batches(stream, 2, stream.steps_per_epoch + 3 - skip)

    full = [[r["id"] for r in b] for b in loader(0)]
    resumed = [[r["id"] for r in b] for b in loader(7)]
    assert resumed == full[7:]


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
