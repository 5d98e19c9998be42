"""Tests of curse_of_depth.theory: recursions, mean-field prediction vs Monte-Carlo, Jacobians, claim checks.

Every claim notebook 02 asserts has a test here that flips an input and sees the condition turn false.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from curse_of_depth import theory as th
from curse_of_depth.model import ModelConfig, build_model

SMALL = ModelConfig(d_model=64, n_layers=48, n_heads=4, seq_len=16, vocab_size=84)


@pytest.fixture(scope="module")
def small_curves():
    return th.measure_variance(SMALL, seeds=(0, 1, 2), batch=4)


@pytest.fixture(scope="module")
def small_predictions():
    return {n: th.mean_field_variance(ModelConfig(**{**SMALL.to_dict(), "norm": n})).variance for n in th.NORMS}


# --- the toy recursions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rho, norm, expected",
    [  # iterated independently in the research brief (paper_brief.md §1.7 item 6), at l = 4 / 12 / 24 / 48
        (0.0, "pre", (5, 13, 25, 49)),
        (0.0, "lns", (3.1, 4.1, 4.8, 5.5)),
        (0.5, "pre", (8.6, 33.5, 90.7, 269)),
        (0.5, "lns", (5.2, 10.0, 15.7, 25.4)),
        (1.0, "pre", (13, 66, 211, 728)),
        (1.0, "lns", (7.8, 18.6, 33.4, 61.4)),
    ],
)
def test_correlated_recursion_matches_independent_iteration(rho, norm, expected):
    s2 = th.correlated_recursion(48, rho=rho, norm=norm, sigma0_sq=1.0)
    np.testing.assert_allclose(s2[[4, 12, 24, 48]], expected, rtol=0.02)


def test_correlated_recursion_shapes():
    L = 400
    pre0 = th.correlated_recursion(L, 0.0, "pre")
    pre1 = th.correlated_recursion(L, 1.0, "pre")
    assert np.allclose(np.diff(pre0), 1.0)  # rho = 0: exactly linear (Xiong)
    assert pre1[L] / pre1[L // 2] == pytest.approx(4.0, rel=0.05)  # rho = 1: quadratic
    assert np.all(th.correlated_recursion(L, 0.7, "post")[1:] == 1.0)
    mix = th.correlated_recursion(L, 0.0, "mix", sigma0_sq=1e-3, mix_alpha=0.25)
    assert np.all(mix[1:101] == 1.0) and mix[L] == pytest.approx(1.0 + 300)
    # LNS factors switched off: the LNS recursion is the Pre-LN one
    np.testing.assert_allclose(th.correlated_recursion(50, 0.3, "lns", lns_power=0.0),
                               th.correlated_recursion(50, 0.3, "pre"))
    np.testing.assert_allclose(th.xiong_linear(10, 2.0, 0.5), 2.0 + 0.5 * np.arange(11))


def test_paper_products():
    L = 4000
    pre, lns = th.paper_product(L), th.paper_product(L, lns=True)
    assert pre[-1] / L**2 == pytest.approx(0.25, rel=0.05)  # Lemma 3.2 iterated: ~l^2/4
    assert lns[-1] / lns[L // 2 - 1] == pytest.approx(2.0, rel=0.05)  # Lemma 4.1 iterated: ~linear
    b = th.paper_bounds(10, lns=True, eps=0.5)
    np.testing.assert_allclose(b["upper"], np.arange(1, 11) ** 1.5)
    np.testing.assert_allclose(th.paper_bounds(5)["upper"], np.exp(np.arange(1, 6)))


@pytest.mark.parametrize("call", [
    lambda: th.correlated_recursion(0),
    lambda: th.correlated_recursion(5, rho=1.5),
    lambda: th.correlated_recursion(5, norm="deepnorm"),
    lambda: th.correlated_recursion(5, b_sq=-1),
    lambda: th.paper_product(5, sigma1_sq=0),
    lambda: th.paper_bounds(5, eps=1.0),
    lambda: th.measure_variance(SMALL, seeds=()),
    lambda: th.measure_variance(SMALL, seq_len=SMALL.seq_len + 1),
    lambda: th.measure_variance(SMALL, norms=("pre",), norm_seeds={"lns": (0,)}),
    lambda: th.measure_variance(SMALL, norm_seeds={"lns": ()}),
    lambda: th.jacobian_distance(SMALL, blocks=[0]),
    lambda: th.explore_variance(width=100),
    lambda: th.check_matches([1, 2, 3], [1, 2]),
    lambda: th.check_decreasing([1, 2, 3], [3, 2, 1]),
    lambda: th.linear_fit([1.0, 2.0]),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


# --- mean-field prediction vs Monte-Carlo -----------------------------------------------------------------------


def test_silu_product_expectation_matches_sampling():
    cov = torch.tensor([[0.3, 0.12], [0.12, 0.2]], dtype=torch.float64)
    g = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), cov).sample(
        (400_000,))
    mc = (torch.nn.functional.silu(g)[:, :, None] * torch.nn.functional.silu(g)[:, None, :]).mean(0)
    np.testing.assert_allclose(th.silu_product_expectation(cov).numpy(), mc.numpy(), rtol=0.03, atol=2e-4)


@pytest.mark.parametrize("norm", ["pre", "lns", "post", "mix"])
def test_mean_field_matches_monte_carlo(small_curves, small_predictions, norm):
    check = th.check_matches(small_curves[norm].mean, small_predictions[norm], rtol=0.12)
    assert check.ok, check.detail


def test_mean_field_follows_scaled_init():
    cfg = ModelConfig(d_model=64, n_layers=32, n_heads=4, seq_len=16, scaled_init=True)
    curves = th.measure_variance(cfg, norms=("pre",), seeds=(0, 1, 2), batch=4)
    pred = th.mean_field_variance(cfg).variance
    assert th.check_matches(curves["pre"].mean, pred, rtol=0.12).ok
    plain = th.mean_field_variance(ModelConfig(**{**cfg.to_dict(), "scaled_init": False})).variance
    assert not th.check_matches(curves["pre"].mean, plain).ok  # forgetting scaled init mispredicts


def test_mean_field_has_no_free_constant():
    # twice the init std -> exactly what the derivation says: embeddings x4, deep increments ~x16 (q^2)
    cfg = ModelConfig(d_model=64, n_layers=40, n_heads=4, seq_len=8)
    a = th.mean_field_variance(cfg)
    b = th.mean_field_variance(ModelConfig(**{**cfg.to_dict(), "init_std": 0.04}))
    assert b.variance[0] == pytest.approx(4 * a.variance[0])
    assert b.increments[-1] / a.increments[-1] > 12
    assert a.variance[1:] == pytest.approx(a.variance[0] + np.cumsum(a.increments))


def test_asymptotic_block_variance_is_the_deep_slope():
    cfg = ModelConfig(d_model=128, n_layers=128, n_heads=4, seq_len=16)
    inc = th.mean_field_variance(cfg).increments
    assert inc[-16:].mean() == pytest.approx(th.asymptotic_block_variance(128), rel=0.05)
    assert inc[0] < 0.5 * inc[-1]  # block 1 averages uncorrelated positions away: a block-1 constant would fail


def test_norm_placement_equals_building_that_norm():
    model = build_model(SMALL, seed=3)
    idx = th.random_tokens(SMALL.vocab_size, 2, 8, 0)
    for norm in ("lns", "post", "mix"):
        ref = build_model(ModelConfig(**{**SMALL.to_dict(), "norm": norm}), seed=3)
        with norm_on(model, norm), torch.no_grad():
            assert torch.equal(model(idx).logits, ref(idx).logits)
    assert model.cfg.norm == "pre" and all(b.scale == 1.0 and not b.post for b in model.blocks)


def norm_on(model, norm):
    return th.norm_placement(model, norm)


# --- the notebook's claims, and their flips -----------------------------------------------------------------------


def test_claim_linear_growth_holds_for_pre_and_fails_for_post_and_lns(small_curves):
    assert th.check_linear_growth(small_curves["pre"].mean).ok
    assert not th.check_linear_growth(small_curves["post"].mean).ok
    assert not th.check_linear_growth(small_curves["lns"].mean).ok
    assert not th.check_linear_growth(np.exp(np.linspace(0, 8, 60))).ok  # exponential growth is not linear


def test_claim_matches_recursion_fails_against_a_wrong_prediction(small_curves, small_predictions):
    pre = small_curves["pre"].mean
    assert th.check_matches(pre, small_predictions["pre"], rtol=0.12).ok
    assert not th.check_matches(pre, small_predictions["lns"]).ok
    assert not th.check_matches(pre, 1.15 * small_predictions["pre"]).ok
    wrong_slope = th.xiong_linear(SMALL.n_layers, pre[0], 2 * th.asymptotic_block_variance(SMALL.d_model))
    assert not th.check_matches(pre, wrong_slope).ok


def test_claim_lns_growth_fails_when_lns_factors_are_forced_to_one(small_curves):
    assert th.check_growth_ratio_below(small_curves["lns"], small_curves["pre"], 0.1).ok
    model = build_model(ModelConfig(**{**SMALL.to_dict(), "norm": "lns"}), seed=0)
    for b in model.blocks:
        b.scale = 1.0  # LNS switched off, weights unchanged
    with torch.no_grad():
        v = th.residual_variance(model(th.random_tokens(84, 4, 16, 10_000), output_hidden_states=True).hidden_states)
    assert not th.check_growth_ratio_below(v, small_curves["pre"], 0.1).ok


def test_claim_post_flat_fails_for_pre_and_mix(small_curves):
    assert th.check_flat(small_curves["post"].mean).ok
    assert not th.check_flat(small_curves["pre"].mean).ok
    assert not th.check_flat(np.r_[0.0, np.ones(10), 1.08 * np.ones(10)]).ok


@pytest.fixture(scope="module")
def jacobians():
    cfg = ModelConfig(d_model=32, n_layers=64, n_heads=4, seq_len=8)
    blocks = th.log_spaced_blocks(64, 10)
    return th.jacobian_distances(cfg, norms=("pre", "lns", "post"), seeds=(0,), blocks=blocks)


def test_claim_jacobian_decreasing_holds_for_pre_and_fails_for_post(jacobians):
    pre, post = jacobians["pre"], jacobians["post"]
    single = th.jacobian_distance(ModelConfig(d_model=32, n_layers=64, n_heads=4, seq_len=8), blocks=pre.blocks)
    np.testing.assert_allclose(single.values, pre.values, rtol=1e-5)  # one model under norm_placement = built as pre
    assert th.check_decreasing(pre.blocks, pre.mean).ok
    assert not th.check_decreasing(post.blocks[1:], post.mean[1:]).ok
    assert not th.check_decreasing(pre.blocks, pre.mean[::-1]).ok


def test_jacobian_distance_matches_autograd():
    cfg = ModelConfig(d_model=16, n_layers=3, n_heads=2, seq_len=6)
    probe = th.jacobian_distance(cfg, seeds=(0,), seq_len=5, token=2)
    model = build_model(cfg, seed=0)
    idx = th.random_tokens(cfg.vocab_size, 1, 5, 10_000)
    with torch.no_grad():
        hs = model(idx, output_hidden_states=True).hidden_states
    for i, b in enumerate(model.blocks):
        h = hs[i]

        def f(xt, b=b, h=h):
            return b(torch.cat([h[:, :2], xt[None, None], h[:, 3:]], 1), model.rope)[0, 2]

        J = torch.autograd.functional.jacobian(f, h[0, 2])
        assert probe.values[0, i] == pytest.approx(((J - torch.eye(16)).norm() / 4).item(), rel=1e-4)


def test_gradient_norms_per_block():
    cfg = ModelConfig(d_model=32, n_layers=6, n_heads=4, seq_len=8)
    g = th.gradient_norms(cfg, seeds=(0, 1), batch=2)
    assert g.values.shape == (2, 6) and np.all(g.values > 0) and g.blocks == list(range(1, 7))
    model = build_model(cfg, seed=0)
    idx = th.random_tokens(cfg.vocab_size, 2, 9, 10_000)
    model(idx[:, :-1], targets=idx[:, 1:]).loss.backward()
    ref = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.blocks[2].parameters()))
    assert g.values[0, 2] == pytest.approx(ref, rel=1e-5)
    by_norm = th.gradient_norms_by_norm(cfg, norms=("post", "pre"), seeds=(0, 1), batch=2)
    np.testing.assert_allclose(by_norm["pre"].values, g.values, rtol=1e-5)  # grads reset between placements


def test_explore_variance_curves():
    d = th.explore_variance(depth=16, width=32, norm="lns", rho=0.5, seq_len=8, batch=2)
    assert len(d["measured"]) == len(d["mean_field"]) == len(d["rho_curve"]) == 17
    assert np.all(d["rho_curve"][1:] > d["linear"][1:])
    assert d["b_sq"] == pytest.approx(th.asymptotic_block_variance(32))


def test_explorer_reuses_a_measurement_already_made(monkeypatch):
    cfg = ModelConfig(d_model=32, n_layers=12, n_heads=4, seq_len=8)
    curves = th.measure_variance(cfg, seeds=(5,), batch=2)

    def no_build(*a, **k):
        raise AssertionError("explore_variance rebuilt a model it had already measured")

    monkeypatch.setattr(th, "build_model", no_build)
    d = th.explore_variance(depth=12, width=32, norm="mix", rho=0.2, seq_len=8, batch=2, seed=5)
    np.testing.assert_allclose(d["measured"], curves["mix"].mean)


# --- the probes' shortcuts compute exactly what the plain model computes -------------------------------------------


def test_seeded_models_draw_build_models_weights():
    cfg = ModelConfig(d_model=32, n_layers=5, n_heads=4, seq_len=8)
    for seed, model in th.seeded_models(cfg, (4, 0, 4)):
        ref = build_model(cfg, seed=seed)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
        assert all(torch.equal(a, b) for a, b in zip(model.buffers(), ref.buffers()))
        assert all(p.grad is None for p in model.parameters())
        model(th.random_tokens(84, 1, 9, 0)[:, :-1], targets=th.random_tokens(84, 1, 8, 1)).loss.backward()
    # the default-init shortcut is scoped to the construction
    assert torch.nn.Linear(4, 4).weight.abs().sum() > 0


def test_shared_blocks():
    cfg = ModelConfig(d_model=32, n_layers=12, n_heads=4, seq_len=8, mix_alpha=0.25)
    assert th.shared_blocks(cfg, "post", "mix") == 3  # floor(0.25 * 12) Post-LN blocks
    assert th.shared_blocks(cfg, "pre", "lns") == 1  # LNS's factor is 1/sqrt(1) = 1 in block 1 only
    assert th.shared_blocks(cfg, "pre", "mix") == 0
    assert th.shared_blocks(cfg, "pre", "pre") == 12


def test_measure_variance_equals_the_models_own_forward():
    cfg = ModelConfig(d_model=32, n_layers=12, n_heads=4, seq_len=8)
    curves = th.measure_variance(cfg, norms=("post", "pre", "mix", "lns"), seeds=(1, 2), batch=2)
    for i, seed in enumerate((1, 2)):
        idx = th.random_tokens(cfg.vocab_size, 2, 8, seed + 10_000)
        for norm, c in curves.items():
            model = build_model(ModelConfig(**{**cfg.to_dict(), "norm": norm}), seed=seed)
            with torch.no_grad():
                ref = th.residual_variance(model(idx, output_hidden_states=True).hidden_states)
            np.testing.assert_array_equal(c.per_seed[i], ref)  # mix continues post's stream: still bit-identical


def test_jacobians_of_a_branched_placement_equal_its_own_run():
    cfg = ModelConfig(d_model=16, n_layers=16, n_heads=2, seq_len=6)
    blocks = [1, 2, 4, 5, 9, 16]  # on both sides of Mix-LN's 4 Post-LN blocks
    both = th.jacobian_distances(cfg, norms=("post", "mix"), seeds=(0,), blocks=blocks, seq_len=6)
    alone = th.jacobian_distance(ModelConfig(**{**cfg.to_dict(), "norm": "mix"}), blocks=blocks, seq_len=6)
    np.testing.assert_array_equal(both["mix"].values, alone.values)
    # probing only blocks below the branch point: post still runs up to it, mix starts there
    low = th.jacobian_distances(cfg, norms=("post", "mix"), seeds=(0,), blocks=[2, 3], seq_len=6)
    low_alone = th.jacobian_distance(ModelConfig(**{**cfg.to_dict(), "norm": "mix"}), blocks=[2, 3], seq_len=6)
    np.testing.assert_array_equal(low["mix"].values, low_alone.values)
    np.testing.assert_array_equal(low["mix"].values[:, 0], both["mix"].values[:, 1])  # block 2 in both runs


def test_mean_field_prediction_is_cached_without_sharing_arrays():
    cfg = ModelConfig(d_model=32, n_layers=10, n_heads=4, seq_len=8, init_std=0.03)
    a = th.mean_field_variance(cfg)
    a.variance[:] = -1.0  # a caller scribbling on its copy
    b = th.mean_field_variance(cfg)
    assert np.all(b.variance > 0) and b.variance[1:] == pytest.approx(b.variance[0] + np.cumsum(b.increments))


def test_norm_seeds_measure_some_norms_over_fewer_seeds():
    cfg = ModelConfig(d_model=32, n_layers=12, n_heads=4, seq_len=8)
    full = th.measure_variance(cfg, seeds=(3, 4), batch=2)
    some = th.measure_variance(cfg, seeds=(3, 4), batch=2, norm_seeds={"lns": (4,), "post": (3,), "mix": (3,)})
    assert some["pre"].seeds == [3, 4] and some["lns"].seeds == [4] and some["mix"].seeds == [3]
    np.testing.assert_array_equal(some["pre"].per_seed, full["pre"].per_seed)
    np.testing.assert_array_equal(some["lns"].per_seed, full["lns"].per_seed[1:])
    np.testing.assert_array_equal(some["mix"].per_seed, full["mix"].per_seed[:1])
