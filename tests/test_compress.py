"""Compression: layer-drop rules pick what they say, drop losses are exact, sparsity methods do what they claim."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from curse_of_depth import analysis as A
from curse_of_depth import compress as C


def tiny_llama(n_layers: int = 6, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def tokens(batch: int = 3, seq: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 97, (batch, seq), generator=torch.Generator().manual_seed(seed))


def test_rules_pick_the_right_layers():
    L = 6
    cost = [5.0, 0.3, 0.1, 0.2, 0.9, 7.0]
    infl = [0.5, 0.05, 0.2, 0.01, 0.3, 0.4]
    assert C.layers_to_drop("measured", 2, L, cost=cost) == [2, 3]
    assert C.layers_to_drop("block_influence", 2, L, influence=infl) == [1, 3]
    assert C.layers_to_drop("last", 2, L) == [3, 4]  # the final layer (5) is kept
    dist = torch.ones(7, 7)
    dist[1, 4] = 0.01  # block of 3 starting at layer 1 is the most similar
    assert C.layers_to_drop("angular", 3, L, dist=dist) == [1, 2, 3]
    with pytest.raises(ValueError, match="needs cost"):
        C.layers_to_drop("measured", 2, L)
    with pytest.raises(ValueError, match="unknown rule"):
        C.layers_to_drop("random", 2, L)
    with pytest.raises(ValueError, match="n must lie"):
        C.layers_to_drop("last", 5, L)


def test_drop_curves_cover_every_rule():
    m, idx = tiny_llama(), tokens()
    hs = A.residual_stream(m, idx)
    scan = A.layer_removal_scan(m, idx, hidden=hs, progress=False)
    res = C.layer_drop_curves(m, idx, [1, 2], dist=A.angular_distance_matrix(hs), influence=A.block_influence(hs),
                              cost=scan.delta, hidden=hs, progress=False)
    assert {p["rule"] for p in res["points"]} == set(C.RULES) and len(res["points"]) == 8
    # n = 1 by measured cost is the cheapest single layer, so it equals the scan's minimum
    pt = next(p for p in res["points"] if p["rule"] == "measured" and p["n"] == 1)
    assert pt["loss"] == pytest.approx(min(scan.losses), abs=1e-5)
    ns, ppl = C.curve(res, "last")
    assert ns == [1, 2] and len(ppl) == 2


def test_owl_ratios_average_to_target_and_favour_outlier_layers():
    r = C.owl_ratios([0.01, 0.05, 0.03, 0.02], target=0.7, lam=0.08)
    assert sum(r) / 4 == pytest.approx(0.7)
    assert max(r) - min(r) == pytest.approx(0.16)
    assert r[1] == min(r) and r[0] == max(r)  # most outliers -> least pruned
    assert C.owl_ratios([0.1, 0.1], 0.5) == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError):
        C.owl_ratios([0.1, 0.2], 0.7, lam=0.4)


def test_outlier_ratio_counts_scores_above_m_times_mean():
    s = torch.tensor([1.0] * 99 + [1000.0])  # mean ~11: only the 1000 is > 5x mean
    assert C.outlier_ratio([s], m=5) == pytest.approx(0.01)


def test_sparsify_hits_the_target_and_restores():
    m, calib = tiny_llama(), tokens(seed=7)
    dense = {n: p.clone() for n, p in m.named_parameters()}
    for method in C.SPARSITY_METHODS:
        with C.pruned(m, method, 0.5, calib) as rep:
            assert rep.achieved == pytest.approx(0.5, abs=0.01)
            assert len(rep.ratios) == 6
            assert float(m.lm_head.weight.eq(0).float().mean()) < 0.01  # head untouched
        for n, p in m.named_parameters():
            assert torch.equal(p, dense[n]), f"{n} not restored after {method}"
    with pytest.raises(ValueError, match="calibration"):
        C.sparsify(m, "wanda", 0.5)


def test_wanda_keeps_weights_on_loud_inputs():
    """Wanda protects weights on input features with large activations; magnitude does not."""
    lin = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.1, 1.0, 1.0, 1.0]]))
    sq = torch.tensor([1e4, 1.0, 1.0, 1.0])  # feature 0 is huge
    w = lin.weight.data.clone()
    C._prune_rows(w, C.wanda_scores(lin, sq), 0.25)
    assert w[0, 0] != 0 and (w[0, 1:] == 0).sum() == 1
    w2 = lin.weight.data.clone()
    C._prune_magnitude(w2, 0.25)
    assert w2[0, 0] == 0


def test_sparsity_table_and_winner():
    m, idx, calib = tiny_llama(), tokens(seed=2), tokens(seed=3)
    t = C.sparsity_table(m, idx, calib, sparsities=(0.5,), progress=False)
    assert {r["method"] for r in t["rows"]} == set(C.SPARSITY_METHODS)
    assert t["dense_loss"] == pytest.approx(A.loss(m, idx))
    given = C.sparsity_table(m, idx, calib, sparsities=(0.5,), methods=("magnitude",), progress=False, dense_loss=1.25)
    assert given["dense_loss"] == 1.25 and given["rows"][0]["loss"] == pytest.approx(t["rows"][0]["loss"])
    fake = {"rows": [{"method": "owl", "sparsity": 0.7, "loss": 2.0}, {"method": "wanda", "sparsity": 0.7, "loss": 3.0}]}
    assert C.winner(fake, 0.7) == "owl"
    fake["rows"][0]["loss"] = 4.0  # flip: now uniform Wanda wins
    assert C.winner(fake, 0.7) == "wanda"
    with pytest.raises(ValueError):
        C.winner(fake, 0.5)


def test_measured_beats_last_claim_flips():
    pts = [{"rule": r, "n": n, "loss": loss, "layers": []}
           for r, n, loss in [("measured", 2, 3.8), ("last", 2, 4.5), ("measured", 4, 4.0), ("last", 4, 4.9)]]
    res = {"points": pts}
    assert C.measured_beats_last(res)
    pts[2]["loss"] = 5.0  # measured now worse at n = 4
    assert not C.measured_beats_last(res)
    assert C.measured_beats_last(res, ns=(2,))
    with pytest.raises(ValueError, match="no point"):
        C.rule_ppl(res, "angular", 2)


def test_gap_claim_flips():
    t = {"rows": [{"method": "owl", "sparsity": 0.7, "loss": 5.0}, {"method": "wanda", "sparsity": 0.7, "loss": 5.05}]}
    assert C.ppl_ratio(t, 0.7) < 1.25  # notebook 06: OWL and Wanda close at 135M
    t["rows"][1]["loss"] = 5.0 + 1.25  # a LLaMA-7B-like gap (x3.5)
    assert C.ppl_ratio(t, 0.7) > 1.25


def test_prune_rows_equals_topk_even_with_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(40, 30, generator=g)
    scores[3, :10] = 0.5  # a row whose threshold is tied
    scores[7] = 1.0  # a row of identical scores
    for ratio in (0.0, 0.3, 0.5, 0.7, 1.0):
        w = torch.randn(40, 30, generator=g) + 5.0  # no zeros before pruning
        ref = w.clone()
        k = int(round(30 * ratio))
        if k:
            ref.scatter_(1, torch.topk(scores, k, dim=1, largest=False).indices, 0.0)
        C._prune_rows(w, scores, ratio)
        assert ((w == 0).sum(dim=1) == k).all()
        untied = [i for i in range(40) if i not in (3, 7)]
        assert torch.equal(w[untied], ref[untied])  # ties may pick different equal-score entries, nothing else
        for i in (3, 7):  # tied rows: the same number of entries and the same pruned scores
            assert torch.equal(scores[i][w[i] == 0].sort().values, scores[i][ref[i] == 0].sort().values)
