import math

import pytest
import torch

from annotation_schema import load_standard
from hae_model.heads import ExpertHead, MetaVoter, RegressionHead, level_score, masked_mean
from hae_model.metavoter import choose_overall, in_holdout, train_metavoter


def test_level_score_from_hand_built_logits():
    # A certain answer gives exactly its level's weight: bad 0, poor .25, ..., excellent 1.
    sure = torch.full((5, 5), -1e4)
    sure[torch.arange(5), torch.arange(5)] = 0.0
    assert level_score(sure).tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0], abs=1e-6)
    # Uniform logits: S_LM = 3 -> 0.5.
    assert float(level_score(torch.zeros(5))) == pytest.approx(0.5)
    # p = (.1, .2, .3, .2, .2): S = .1 + .4 + .9 + .8 + 1.0 = 3.2 -> (3.2 - 1) / 4 = .55.
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2])) + 7.0  # softmax ignores shifts
    assert float(level_score(logits)) == pytest.approx(0.55, abs=1e-6)
    # Batched over leading dimensions, float32 out of bf16 in.
    out = level_score(torch.randn(2, 3, 5).to(torch.bfloat16))
    assert out.shape == (2, 3) and out.dtype == torch.float32


def test_regression_head_shape_and_range():
    head = RegressionHead(32)
    out = head(torch.randn(7, 32) * 100)
    assert out.shape == (7,)
    assert ((out >= 0) & (out <= 1)).all()


def test_expert_head_wiring_follows_the_standard():
    std = load_standard()
    head = ExpertHead(16, std, ffn_hidden=16)
    assert head.leaf.out_features == len(std.leaves) == 9
    assert head.children_of == {6: (1, 2, 3, 4, 5), 11: (7, 8, 9), 12: (6, 10, 11)}
    for node, kids in head.children_of.items():
        ffn = head.nodes[str(node)].net
        assert (ffn[0].in_features, ffn[0].out_features, ffn[2].out_features) == (len(kids), 16, 1)
        assert isinstance(ffn[1], torch.nn.GELU)
    out = head(torch.randn(4, 16))
    assert out.shape == (4, 12) and ((out > 0) & (out < 1)).all()


def test_root_sees_leaves_only_through_its_children():
    torch.manual_seed(0)
    head = ExpertHead(8)
    leaves = torch.rand(1, 9)
    jac = torch.autograd.functional.jacobian(lambda x: head.combine(x)[0], leaves)[:, 0]  # [12, 9]
    leaf_pos = {idx: j for j, idx in enumerate(head.leaves)}
    facial = [leaf_pos[i] for i in (1, 2, 3, 4, 5)]
    general = [leaf_pos[i] for i in (7, 8, 9)]
    env = leaf_pos[10]
    # Facial Aesthetic (6) depends on leaves 1-5 only, General Appearance (11) on 7-9 only.
    others6 = [j for j in range(9) if j not in facial]
    others11 = [j for j in range(9) if j not in general]
    assert torch.all(jac[5, others6] == 0) and torch.all(jac[5, facial] != 0)
    assert torch.all(jac[10, others11] == 0) and torch.all(jac[10, general] != 0)
    # Leaves are their own scores.
    for idx, j in leaf_pos.items():
        row = torch.zeros(9)
        row[j] = 1.0
        assert torch.equal(jac[idx - 1], row)
    # Node 12 = FFN(6, 10, 11): its Jacobian is the chain rule through those three nodes only.
    out = head.combine(leaves).detach()
    parents = torch.stack([out[0, 5], out[0, 9], out[0, 10]]).detach()
    j12 = torch.autograd.functional.jacobian(lambda p: head.nodes["12"](p[None])[0], parents)
    chain = j12 @ torch.stack([jac[5], jac[9], jac[10]])
    assert torch.allclose(jac[11], chain, atol=1e-7)
    with torch.no_grad():
        assert float(out[0, 11]) == pytest.approx(float(head.nodes["12"](parents[None])[0]))
    assert jac[11, env] != 0


def test_masked_mean_sends_no_gradient_to_masked_items():
    values = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = masked_mean(values**2, torch.tensor([True, False, True]))
    out.backward()
    assert out.item() == pytest.approx(5.0)
    assert values.grad.tolist() == [1.0, 0.0, 3.0]
    empty = torch.tensor([1.0, 2.0], requires_grad=True)
    zero = masked_mean(empty, torch.tensor([False, False]))
    zero.backward()
    assert zero.item() == 0.0
    assert empty.grad.tolist() == [0.0, 0.0]


def test_metavoter_shape():
    voter = MetaVoter(16).eval()
    layers = [type(m).__name__ for m in voter.net]
    assert layers == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    out = voter(torch.rand(5, 3))
    assert out.shape == (5,) and ((out > 0) & (out < 1)).all()


def test_metavoter_learns_a_blend_of_the_heads():
    gen = torch.Generator().manual_seed(0)
    truth = torch.rand(600, generator=gen)
    noisy = lambda s: (truth + s * torch.randn(600, generator=gen)).clamp(0, 1)  # noqa: E731
    heads = torch.stack([noisy(0.15), noisy(0.05), noisy(0.1)], dim=-1)
    torch.manual_seed(0)
    voter = MetaVoter()
    history = train_metavoter(voter, heads[:500], truth[:500], epochs=10, min_steps=600, seed=0)
    assert len(history) == math.ceil(600 / 8)  # 500 rows: 7 full batches + one of 52
    assert history[-1] < history[0]
    assert not voter.training
    with torch.no_grad():
        pred = voter(heads[500:])
    mae = float((pred - truth[500:]).abs().mean())
    # Better than the best single head (the one with noise 0.05 has MAE ~ 0.04).
    best_head = float((heads[500:, 1] - truth[500:]).abs().mean())
    assert mae < best_head * 1.1
    assert mae < 0.06


def test_metavoter_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        train_metavoter(MetaVoter(), torch.rand(1, 3), torch.rand(1))
    with pytest.raises(ValueError, match="expected inputs"):
        train_metavoter(MetaVoter(), torch.rand(4, 2), torch.rand(4))


def _heads_and_truth(n, noise, seed=0):
    gen = torch.Generator().manual_seed(seed)
    truth = torch.rand(n, generator=gen)
    heads = [(truth + s * torch.randn(n, generator=gen)).clamp(0, 1) for s in noise]
    return torch.stack(heads, dim=-1), truth


def test_overall_stays_the_metavoter_when_it_beats_the_heads():
    heads, truth = _heads_and_truth(300, (0.15, 0.08, 0.1))
    keys = [f"img{i}" for i in range(300)]
    choice, facts = choose_overall(heads, truth, keys, min_steps=300)
    assert choice == "metavoter"
    assert facts["rows"] == 300
    assert facts["metavoter_cv_l1"] <= min(facts["head_l1"].values())


def test_overall_falls_back_to_a_head_that_beats_the_metavoter():
    """A head that is already exact cannot be beaten: the model must answer with it."""
    heads, truth = _heads_and_truth(120, (0.2, 0.0, 0.2))
    choice, facts = choose_overall(heads, truth, [f"i{i}" for i in range(120)], min_steps=100)
    assert choice == "regression"
    assert facts["head_l1"]["regression"] == 0.0 < facts["metavoter_cv_l1"]


def test_too_few_rows_to_check_the_metavoter_means_the_best_head():
    heads, truth = _heads_and_truth(2, (0.3, 0.2, 0.0))
    choice, facts = choose_overall(heads, truth, ["a", "b"], min_steps=10)
    assert choice == "expert" and facts["rows"] == 2


def test_holdout_slice_is_a_stable_hash_of_the_image_id():
    ids = [f"{i:064x}" for i in range(4000)]
    held = [i for i in ids if in_holdout(i, 0.1)]
    assert 0.08 < len(held) / len(ids) < 0.12
    assert held == [i for i in ids if in_holdout(i, 0.1)]
    assert set(held) <= {i for i in ids if in_holdout(i, 0.2)}
