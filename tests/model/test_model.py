import pytest
import torch

from annotation_schema import load_standard
from hae_data.qa import pick_question
from hae_model.config import HAEConfig
from hae_model.data import ShardStream, list_row_groups
from hae_model.model import HumanAesExpert, load_for_inference
from hae_model.processing import collate_inference, collate_train

STD = load_standard()


@pytest.fixture(scope="module")
def rows(small_export):
    return list(ShardStream(list_row_groups(small_export, "train"), lambda r: r))


@pytest.fixture
def built(tiny_dir):
    torch.manual_seed(0)
    model, encoder = HumanAesExpert.from_base(str(tiny_dir), max_tiles=1)
    # Fresh LoRA B matrices are zero; random ones make the adapter matter in these tests.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model, encoder


def _inputs(batch):
    return {k: v for k, v in batch.items() if k != "meta"}


def _pick(rows, part, n):
    return [r for r in rows if r["part"] == part][:n]


def test_config_and_trainable_parameters(built, tiny_dir):
    model, _ = built
    cfg = model.config
    assert (cfg.hidden_size, cfg.image_seq_length, cfg.tile_size) == (64, 4, 56)
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (8, 32, 0.05)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("language_model" in n and "lora_A" in n for n in trainable)
    assert any("multi_modal_projector" in n and "lora_A" in n for n in trainable)
    assert not any("vision_tower" in n for n in trainable)
    assert {n.split(".")[0] for n in trainable} == {"backbone", "regression", "expert", "metavoter"}
    assert not any("lm_head" in n or "embed_tokens" in n for n in trainable)


def test_output_shapes_on_a_mixed_batch(built, rows):
    model, encoder = built
    batch = collate_train(
        [
            encoder.encode_train(r)
            for r in _pick(rows, "overall", 3) + _pick(rows, "fine_grained", 2)
        ],
        encoder.pad_id,
    )
    out = model(**_inputs(batch))
    assert out.reg_score.shape == (5,) and out.lm_score.shape == (5,)
    assert out.expert_scores.shape == (5, 12) and out.level_logits.shape == (5, 5)
    for loss in (out.loss, out.lm_loss, out.reg_loss, out.exp_loss):
        assert loss.shape == () and torch.isfinite(loss)
    expected = out.lm_loss + out.reg_loss + out.exp_loss
    assert torch.allclose(out.loss, expected)
    no_labels = model(
        **{
            k: v
            for k, v in _inputs(batch).items()
            if k == "input_ids" or k in ("attention_mask", "pixel_values", "head_pos")
        }
    )
    assert no_labels.loss is None and no_labels.reg_score.shape == (5,)


def _head_grads(model, batch):
    model.zero_grad(set_to_none=True)
    model(**_inputs(batch)).loss.backward()
    reg = [p.grad for p in model.regression.parameters()]
    exp = [p.grad for p in model.expert.parameters()]
    return reg, exp


def test_switch_masks_route_each_kind_to_its_head(built, rows):
    model, encoder = built
    model.eval()  # no dropout: gradients below are compared exactly
    overall = [encoder.encode_train(r) for r in _pick(rows, "overall", 3)]
    fine = [encoder.encode_train(r) for r in _pick(rows, "fine_grained", 3)]

    reg, exp = _head_grads(model, collate_train(fine, encoder.pad_id))
    assert all(torch.count_nonzero(g) == 0 for g in reg)  # no gradient to the regression head
    assert any(torch.count_nonzero(g) > 0 for g in exp)

    reg, exp = _head_grads(model, collate_train(overall, encoder.pad_id))
    assert all(torch.count_nonzero(g) == 0 for g in exp)  # no gradient to the Expert head
    assert any(torch.count_nonzero(g) > 0 for g in reg)

    # In a mixed batch, the targets of the other kind do not touch a head's gradient.
    mixed = collate_train(overall + fine, encoder.pad_id)
    reg_a, exp_a = _head_grads(model, mixed)
    changed = {
        **mixed,
        "score": mixed["score"].clone(),
        "dimension_scores": mixed["dimension_scores"].clone(),
    }
    changed["score"][3:] = torch.rand(3)  # fine rows' overall score: not the regression head's
    changed["dimension_scores"][:3] = torch.rand(3, 12)  # overall rows carry no dimensions
    reg_b, exp_b = _head_grads(model, changed)
    assert all(torch.equal(a, b) for a, b in zip(reg_a, reg_b, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(exp_a, exp_b, strict=True))


def test_weights_scale_the_head_losses(tiny_dir, rows):
    torch.manual_seed(0)
    model, encoder = HumanAesExpert.from_base(
        str(tiny_dir), max_tiles=1, reg_weight=0.5, exp_weight=2.0
    )
    model.eval()
    batch = collate_train(
        [
            encoder.encode_train(r)
            for r in _pick(rows, "overall", 2) + _pick(rows, "fine_grained", 2)
        ],
        encoder.pad_id,
    )
    out = model(**_inputs(batch))
    assert torch.allclose(out.loss, out.lm_loss + 0.5 * out.reg_loss + 2.0 * out.exp_loss)


def test_scoring_pass_matches_the_training_positions(built, rows):
    """The heads read the last prompt token, so one scoring pass gives the same head outputs as
    teacher forcing with the full answer (causal attention: the answer cannot leak back)."""
    model, encoder = built
    model.eval()
    # Scoring asks the canonical question; train on it too, so both passes see one prompt.
    overall = [{**r, "question": STD.overall_questions[0]} for r in _pick(rows, "overall", 3)]
    fine = [
        {**r, "question": STD.fine_grained_questions[0]} for r in _pick(rows, "fine_grained", 2)
    ]
    inf = collate_inference([encoder.encode_inference(r) for r in overall + fine], encoder.pad_id)
    pred = model.predict(inf)
    with torch.no_grad():
        train_o = model(
            **_inputs(collate_train([encoder.encode_train(r) for r in overall], encoder.pad_id))
        )
        train_f = model(
            **_inputs(collate_train([encoder.encode_train(r) for r in fine], encoder.pad_id))
        )
    assert torch.allclose(pred.regression[:3], train_o.reg_score, atol=1e-5)
    assert torch.allclose(pred.lm[:3], train_o.lm_score, atol=1e-5)
    assert torch.allclose(pred.dimensions[3:], train_f.expert_scores, atol=1e-5)
    assert torch.equal(pred.expert, pred.dimensions[:, 11])
    assert pred.metavoter.shape == (5,) and pred.heads().shape == (5, 3)


def test_inference_asks_one_canonical_question_whatever_the_image_bytes(built, rows):
    """Training rows pick a paraphrase by a hash of the image id; inference must not, or a
    re-encoded copy of a photo (new bytes, new id) would be asked another question."""
    model, encoder = built
    model.eval()
    row = _pick(rows, "overall", 1)[0]
    # Two ids for the same pixels whose training paraphrases differ, as after a re-encode.
    ids = [f"copy-{k}" for k in range(20)]
    other = next(i for i in ids if pick_question(i, "overall") != pick_question(ids[0], "overall"))
    a = encoder.encode_inference({**row, "image_id": ids[0]})
    b = encoder.encode_inference({**row, "image_id": other})
    assert a["overall_ids"] == b["overall_ids"] and a["fine_prompts"] == b["fine_prompts"]
    prompt = encoder.tokenizer.decode(a["overall_prompt"])
    assert STD.overall_questions[0] in prompt
    assert STD.fine_grained_questions[0] in encoder.tokenizer.decode(a["fine_prompt"])
    pa, pb = (model.predict(collate_inference([s], encoder.pad_id)) for s in (a, b))
    assert torch.equal(pa.metavoter, pb.metavoter) and torch.equal(pa.dimensions, pb.dimensions)
    with pytest.raises(ValueError, match="questions must be one of"):
        encoder.inference_questions("first")


def test_overall_is_the_score_stage_2_chose(built, rows):
    model, encoder = built
    model.eval()
    batch = collate_inference([encoder.encode_inference(r) for r in rows[:3]], encoder.pad_id)
    assert torch.equal(model.predict(batch).overall, model.predict(batch).metavoter)
    model.config.overall_from = "expert"
    pred = model.predict(batch)
    assert torch.equal(pred.overall, pred.expert)
    with pytest.raises(ValueError, match="overall_from must be one of"):
        HAEConfig(
            base_model="x",
            hidden_size=4,
            level_token_ids=[1],
            image_seq_length=1,
            tile_size=28,
            overall_from="mean",
        )


def test_all_paraphrases_average_the_head_scores(built, rows):
    model, encoder = built
    model.eval()
    picked = _pick(rows, "overall", 2) + _pick(rows, "fine_grained", 1)
    samples = [encoder.encode_inference(r, questions="all") for r in picked]
    assert all(len(s["overall_ids"]) == len(s["fine_prompts"]) == 5 for s in samples)
    averaged = model.predict(collate_inference(samples, encoder.pad_id))
    singles = []
    for q in range(5):
        one = [
            {
                **s,
                "overall_ids": [s["overall_ids"][q]],
                "overall_prompts": [s["overall_prompts"][q]],
                "fine_prompts": [s["fine_prompts"][q]],
            }
            for s in samples
        ]
        singles.append(model.predict(collate_inference(one, encoder.pad_id)))
    for name in ("lm", "regression", "dimensions"):
        mean = torch.stack([getattr(p, name) for p in singles]).mean(0)
        assert torch.allclose(getattr(averaged, name), mean, atol=1e-5), name
    assert not torch.allclose(singles[0].regression, singles[1].regression)
    voted = model.metavoter(averaged.heads())
    assert torch.allclose(averaged.metavoter, voted, atol=1e-6)


def test_save_load_gives_identical_outputs(built, rows, tmp_path):
    model, encoder = built
    # Non-default heads and BatchNorm statistics, so the round trip has something to carry.
    model.train()
    with torch.no_grad():
        for p in model.regression.parameters():
            p.add_(0.3)
        model.metavoter(torch.rand(16, 3))
    model.eval()
    inf = collate_inference([encoder.encode_inference(r) for r in rows[:6]], encoder.pad_id)
    before = model.predict(inf)
    model.save_pretrained(tmp_path / "ckpt", encoder)
    assert HAEConfig.load(tmp_path / "ckpt") == model.config
    loaded, enc2 = load_for_inference(tmp_path / "ckpt")
    assert not loaded.training
    after = loaded.predict(
        collate_inference([enc2.encode_inference(r) for r in rows[:6]], enc2.pad_id)
    )
    for name in ("lm", "regression", "expert", "metavoter", "dimensions"):
        assert torch.allclose(getattr(before, name), getattr(after, name), atol=1e-6), name
    with pytest.raises(ValueError, match="max_tiles must be >= 1"):  # 0 is not "the model's"
        load_for_inference(tmp_path / "ckpt", max_tiles=0)
    # Saving again over the same folder replaces it cleanly.
    model.save_pretrained(tmp_path / "ckpt", encoder)
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name.startswith(".staging")]


def test_generated_answers_are_token_lists(built, rows):
    model, encoder = built
    model.eval()
    inf = collate_inference([encoder.encode_inference(r) for r in rows[:2]], encoder.pad_id)
    answers = model.generate_answers(
        inf["overall_prompt"],
        inf["pixel_values"],
        pad_id=encoder.pad_id,
        eos_id=encoder.eos_id,
        max_new_tokens=5,
    )
    assert len(answers) == 2 and all(len(a) <= 5 for a in answers)
    assert all(isinstance(t, int) for a in answers for t in a)


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a HumanAesExpert checkpoint"):
        HAEConfig.load(tmp_path)
    (tmp_path / "config.json").write_text('{"base_model": "x", "surprise": 1}')
    with pytest.raises(ValueError, match="unknown fields"):
        HAEConfig.load(tmp_path)
    with pytest.raises(ValueError, match="max_tiles"):
        HAEConfig(
            base_model="x",
            hidden_size=4,
            level_token_ids=[1],
            image_seq_length=1,
            tile_size=28,
            max_tiles=0,
        )
