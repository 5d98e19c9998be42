"""Per-layer diagnostics: the adapter equals the real forward, the removal scan is exact, statistics are right."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from curse_of_depth import analysis as A
from curse_of_depth.hf import without_layers
from curse_of_depth.model import build_model


def tiny_llama(n_layers: int = 5, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def tokens(vocab: int = 97, batch: int = 3, seq: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def hf_loss(model, idx) -> float:
    with torch.no_grad():
        logits = model(input_ids=idx, use_cache=False).logits
    return float(F.cross_entropy(logits[:, :-1].flatten(0, 1), idx[:, 1:].flatten()))


def test_hf_adapter_matches_model_forward():
    m, idx = tiny_llama(), tokens()
    assert A.loss(m, idx) == pytest.approx(hf_loss(m, idx), abs=1e-5)
    hs = A.residual_stream(m, idx)
    assert hs.shape == (6, 3, 16, 32)
    with torch.no_grad():
        ref = m(input_ids=idx, output_hidden_states=True).hidden_states
    torch.testing.assert_close(hs[0], ref[0])
    torch.testing.assert_close(hs[3], ref[3], atol=1e-5, rtol=1e-5)
    # the last entry is the raw residual, not transformers 5.x's normed last hidden state
    assert not torch.allclose(hs[-1], m.model.norm(hs[-1]))


def test_removal_scan_equals_deleting_the_layer():
    m, idx = tiny_llama(), tokens()
    scan = A.layer_removal_scan(m, idx, progress=False)
    for i in range(5):
        with without_layers(m, [i]):
            assert m.config.num_hidden_layers == 4
            assert scan.losses[i] == pytest.approx(hf_loss(m, idx), abs=1e-5)
    assert m.config.num_hidden_layers == 5 and len(m.model.layers) == 5  # restored
    assert scan.base_loss == pytest.approx(hf_loss(m, idx), abs=1e-5)
    assert scan.ppl_ratio[0] == pytest.approx(math.exp(scan.losses[0] - scan.base_loss))


def test_kit_model_stack_matches_forward_and_skip():
    m = build_model(vocab_size=50, d_model=32, n_layers=4, n_heads=4, seq_len=32, seed=3).eval()
    x, y = tokens(50, 2, 16, 4), tokens(50, 2, 16, 5)
    assert A.loss(m, x, y) == pytest.approx(float(m(x, y).loss.detach()), abs=1e-5)
    hs = A.residual_stream(m, x)
    ref = m(x, output_hidden_states=True).hidden_states
    torch.testing.assert_close(hs, torch.stack(ref))
    scan = A.layer_removal_scan(m, x, y, progress=False)
    for i in range(4):
        with without_layers(m, [i]), torch.no_grad():
            assert scan.losses[i] == pytest.approx(float(m(x, y).loss), abs=1e-5)


def test_kit_profile_and_grad_norms():
    m = build_model(vocab_size=50, d_model=32, n_layers=3, n_heads=4, seq_len=32, seed=0)
    x, y = tokens(50, 2, 16, 4), tokens(50, 2, 16, 5)
    prof = A.layer_profile(m, x, y, grads=True)
    assert len(prof.rms_pooled) == len(prof.variance_per_token) == 4 and len(prof.angular) == 3 and len(prof.removal.losses) == 3
    # gradient norms by hand through .grad
    m.zero_grad()
    m(x, y).loss.backward()
    manual = [math.sqrt(sum(float(p.grad.pow(2).sum()) for p in b.parameters())) for b in m.blocks]
    assert prof.grad_norms == pytest.approx(manual, rel=1e-4)
    d = prof.to_dict()
    assert d["removal"]["delta"] == pytest.approx([a - d["removal"]["base_loss"] for a in d["removal"]["losses"]])


def test_statistics_by_hand():
    g = torch.Generator().manual_seed(0)
    hs = torch.randn(4, 2, 5, 8, generator=g)
    hs[:, :, 0] *= 100  # a huge "attention sink" at position 0
    rms = A.residual_rms_pooled(hs)
    assert rms[1] == pytest.approx(float(hs[1, :, 1:].pow(2).mean().sqrt()))
    assert A.residual_rms_pooled(hs, skip_first=False)[1] > 10 * rms[1]  # position 0 would dominate
    assert A.residual_variance_pooled(hs)[2] == pytest.approx(float(hs[2, :, 1:].var()), rel=1e-5)
    per_token = hs[2, :, 1:].var(-1, unbiased=False).mean()
    assert A.residual_variance_per_token(hs)[2] == pytest.approx(float(per_token), rel=1e-5)
    assert A.residual_rms_per_token(hs).shape == (4, 8)
    D = A.angular_distance_matrix(hs)
    a, b = hs[1, :, 1:].reshape(-1, 8), hs[3, :, 1:].reshape(-1, 8)
    by_hand = torch.arccos(F.cosine_similarity(a, b, dim=-1).clamp(-1, 1)).mean() / math.pi
    assert D[1, 3] == pytest.approx(float(by_hand), abs=1e-5)
    assert torch.allclose(D, D.T) and torch.allclose(D.diagonal(), torch.zeros(4), atol=1e-3)
    torch.testing.assert_close(A.adjacent_angular_distance(hs), D.diagonal(1), atol=1e-5, rtol=1e-5)
    heat = A.block_distances(D)
    assert heat[1, 0] == pytest.approx(float(D[0, 2])) and math.isnan(float(heat[2, 1]))
    bi = A.block_influence(hs)
    assert bi[0] == pytest.approx(1 - float(F.cosine_similarity(hs[0, :, 1:].reshape(-1, 8),
                                                                hs[1, :, 1:].reshape(-1, 8), dim=-1).mean()), abs=1e-5)
    # identical states: distance 0, influence 0; opposite: distance 1
    same = torch.stack([hs[0], hs[0], -hs[0]])
    D2 = A.angular_distance_matrix(same)
    assert float(D2[0, 1]) < 1e-3 and float(D2[0, 2]) == pytest.approx(1.0, abs=1e-3)
    assert A.best_block(D2, 1) == (0, pytest.approx(float(D2[0, 1])))
    last = A.angular_distance_matrix(hs, last_token=True)
    assert last[0, 1] == pytest.approx(float(torch.arccos(F.cosine_similarity(hs[0, :, -1], hs[1, :, -1], dim=-1)
                                                          .clamp(-1, 1)).mean() / math.pi), abs=1e-5)


def test_rank_correlation():
    from scipy.stats import spearmanr

    assert A.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert A.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert A.rank_correlation(torch.tensor([1.0, 5.0, 2.0]), [1, 3, 2]) == pytest.approx(1.0)  # tensors work
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, generator=g), torch.randn(40, generator=g)
    assert A.rank_correlation(a, b) == pytest.approx(spearmanr(a, b).statistic)
    ties = [1, 1, 2, 3, 3, 3, 4]  # ties take their average rank, as scipy's Spearman does
    assert A.rank_correlation(ties, [2, 1, 3, 5, 4, 6, 7]) == pytest.approx(spearmanr(ties, [2, 1, 3, 5, 4, 6, 7]).statistic)
    with pytest.raises(ValueError):
        A.rank_correlation([1], [2])
    with pytest.raises(ValueError, match="constant"):
        A.rank_correlation([1, 1, 1], [1, 2, 3])


def test_per_token_quantiles_see_through_a_few_massive_activations():
    g = torch.Generator().manual_seed(0)
    hs = torch.randn(3, 4, 64, 32, generator=g)  # 3 states, 4 x 64 tokens, d = 32: RMS ~1 everywhere
    massive = hs.clone()
    massive[2, 1, 10, 7] = 800.0  # one feature of one ordinary token (position 10, not 0), as in SmolLM2
    massive[2, 3, 40, 7] = -800.0
    pooled, pooled_m = A.residual_rms_pooled(hs), A.residual_rms_pooled(massive)
    q, q_m = A.residual_rms_quantiles(hs), A.residual_rms_quantiles(massive)
    med = q["quantiles"].index(0.5)
    assert pooled_m[2] > 5 * pooled[2]  # the pooled RMS jumps ...
    assert q_m["values"][med][2] == pytest.approx(q["values"][med][2], rel=0.01)  # ... the median token does not
    assert q_m["max"][2] == pytest.approx(800 / math.sqrt(32), rel=0.01)  # the max sees the outlier token
    assert torch.allclose(pooled_m[:2], pooled[:2])
    per_token = A.residual_rms_per_token(massive)
    assert per_token.shape == (3, 4 * 63) and float(per_token[2].max()) == pytest.approx(q_m["max"][2])
    # pooled variance = per-token variance + the variance of the per-token means (biased estimators throughout)
    x = massive[2].reshape(-1, 32)
    pooled_biased = float(A.residual_variance_pooled(massive, skip_first=False)[2]) * (x.numel() - 1) / x.numel()
    assert pooled_biased == pytest.approx(float(A.residual_variance_per_token(massive, skip_first=False)[2]
                                                + x.mean(-1).var(unbiased=False)), rel=1e-4)
    with pytest.raises(ValueError, match="quantiles"):
        A.residual_rms_quantiles(hs, quantiles=(1.5,))


def test_bad_inputs():
    m = tiny_llama(2)
    with pytest.raises(ValueError, match="integer tensor"):
        A.loss(m, torch.randn(2, 8))
    with pytest.raises(ValueError, match="at least 2 tokens"):
        A.residual_stream(m, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="LLaMA-family"):
        A.layer_stack(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="out of range"):
        A.layer_removal_scan(m, tokens(), layers=[5], progress=False)
    with pytest.raises(ValueError, match="block size"):
        A.best_block(torch.zeros(3, 3), 3)


def test_middle_third_claim_flips():
    L = 30
    delta = [5.0, 2.0] + [0.3] * 26 + [1.0, 3.0]
    assert A.claim_layers(L) == [0, 1, *range(10, 20), 28, 29]
    assert A.middle_third_cheaper_than_ends(delta)
    flipped = list(delta)
    flipped[15] = 20.0  # one very costly middle layer lifts the middle mean above layer 28's cost
    assert not A.middle_third_cheaper_than_ends(flipped)
    cheap_end = list(delta)
    cheap_end[29] = 0.1  # a last layer cheaper than the middle mean
    assert not A.middle_third_cheaper_than_ends(cheap_end)
    subset = {i: delta[i] for i in A.claim_layers(L)}  # the smoke scan measures only these
    assert A.middle_third_cheaper_than_ends(subset, n_layers=L)
    with pytest.raises(ValueError, match="needs the removal cost"):
        A.middle_third_cheaper_than_ends({0: 1.0}, n_layers=L)


def test_loss_with_layers_dropped_equals_deleting_them_and_reuses_inputs_exactly():
    m, idx = tiny_llama(6), tokens()
    hs = A.residual_stream(m, idx)
    for drop in ([2], [1, 4], [0, 5], []):
        with without_layers(m, drop) if drop else torch.no_grad():
            ref = hf_loss(m, idx)
        assert A.loss(m, idx, drop=drop, hidden=hs) == pytest.approx(ref, abs=1e-5)
        assert A.loss(m, idx, drop=drop) == pytest.approx(ref, abs=1e-5)
    part = A.layer_removal_scan(m, idx, layers=[4, 0, 2], progress=False)
    assert part.layers == [4, 0, 2] and part.losses == pytest.approx([A.loss(m, idx, drop=[i]) for i in (4, 0, 2)])
    with pytest.raises(ValueError, match="keep at least one"):
        A.loss(m, idx, drop=range(6))


def test_loss_reads_logits_in_row_chunks_exactly():
    m, idx = tiny_llama(2), tokens(batch=5, seq=40)
    st = A.layer_stack(m)
    h = A.residual_stream(m, idx)[-1]
    assert A._nll(st, h[:, :-1], idx[:, 1:], rows=7) == pytest.approx(hf_loss(m, idx), abs=1e-5)


def test_depth_profile_reads_linear_quadratic_and_flat():
    ell = np.arange(1, 25, dtype=float)
    lin, quad, flat = A.depth_profile(1e-3 * ell), A.depth_profile(1e-3 * ell**2), A.depth_profile(np.full(24, 0.5))
    assert lin.exponent == pytest.approx(1.0, abs=1e-6) and quad.exponent == pytest.approx(2.0, abs=1e-6)
    assert flat.exponent == pytest.approx(0.0, abs=1e-9) and flat.total == pytest.approx(1.0)
    assert lin.total == pytest.approx(24.0) and lin.shallow == pytest.approx(6.0) and lin.deep == pytest.approx(4.0)
    # a profile that jumps in the first blocks and then saturates: large shallow growth, flat deep part
    sat = A.depth_profile(np.r_[0.1, 1.0, 2.0, np.full(21, 2.2)])
    assert sat.shallow > 10 and sat.exponent < 0.1 and sat.deep < 1.2
    with pytest.raises(ValueError):
        A.depth_profile([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="positive"):
        A.depth_profile(np.r_[1.0, np.zeros(9)])


def test_training_growth_table_aggregates_seeds():
    ell = np.arange(0, 25, dtype=float)
    runs = [{"norm": "pre", "seed": s, "steps": [0, 40],
             "snapshots": [{"variance_per_token": list(1e-3 * (1 + ell) * (1 + s))},
                           {"variance_per_token": list(1e-3 * (1 + ell) ** 2)}]} for s in range(3)]
    t = A.training_growth_table({"runs": runs})
    assert set(t) == {"pre"} and set(t["pre"]) == {0, 40}
    mean, sd, n = t["pre"][40]["exponent"]
    assert n == 3 and sd == pytest.approx(0.0, abs=1e-9) and mean > 1.5  # quadratic in (1 + l): steeper than linear
    assert t["pre"][0]["exponent"][0] < 1.0
    assert t["pre"][0]["last"][0] == pytest.approx(np.mean([1e-3 * 25 * (1 + s) for s in range(3)]))


def test_relative_update():
    g = torch.Generator().manual_seed(0)
    h0 = torch.randn(2, 6, 16, generator=g)
    step = torch.randn(2, 6, 16, generator=g)
    hs = torch.stack([h0, h0 + 0.1 * step, h0 + 0.1 * step])  # block 1 adds 0.1 x noise, block 2 nothing
    ru = A.relative_update(hs, skip_first=False)
    by_hand = ((0.1 * step).norm(dim=-1) / h0.norm(dim=-1)).mean()
    assert ru[0] == pytest.approx(float(by_hand), rel=1e-5) and ru[1] == pytest.approx(0.0, abs=1e-7)
