"""Tests of curse_of_depth.theory: recursions, mean-field prediction vs Monte-Carlo, Jacobians, claim checks.

Every claim notebook 02 asserts has a test here that flips an input and sees the condition turn false.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from curse_of_depth import theory as th
from curse_of_depth.analysis import residual_variance_per_token
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
    [  # the one-sub-layer-per-step iteration at l = 4 / 12 / 24 / 48 with the cross term written rho_p sigma b
        # (the paper's Eqs. 21-23), iterated independently for rho_p = 0, 0.5, 1: rho_p = 2 rho, so the
        # correlation coefficients here are 0, 0.25, 0.5
        (0.0, "pre", (5, 13, 25, 49)),
        (0.0, "lns", (3.1, 4.1, 4.8, 5.5)),
        (0.25, "pre", (8.6, 33.5, 90.7, 269)),
        (0.25, "lns", (5.2, 10.0, 15.7, 25.4)),
        (0.5, "pre", (13, 66, 211, 728)),
        (0.5, "lns", (7.8, 18.6, 33.4, 61.4)),
    ],
)
def test_correlated_recursion_matches_independent_iteration(rho, norm, expected):
    s2 = th.correlated_recursion(48, rho=rho, norm=norm, sigma0_sq=1.0)
    np.testing.assert_allclose(s2[[4, 12, 24, 48]], expected, rtol=0.02)


def test_correlated_recursion_is_the_variance_of_a_sum():
    # Var(X + Y) = sx^2 + sy^2 + 2 rho sx sy: one step of the recursion against sampled correlated Gaussians
    g = torch.Generator().manual_seed(0)
    sx, sy, n = 3.0, 0.7, 400_000
    for rho in (-0.6, 0.0, 0.3, 0.9):
        z1, z2 = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
        x, y = sx * z1, sy * (rho * z1 + math.sqrt(1 - rho**2) * z2)
        step = th.correlated_recursion(1, rho=rho, sigma0_sq=sx**2, b_sq=sy**2)[1]
        assert step == pytest.approx(float((x + y).var()), rel=0.01)
        # the paper's form (rho sigma b, no factor 2) misses the covariance by half: the test would see it
        if rho != 0.0:
            assert sx**2 + sy**2 + rho * sx * sy != pytest.approx(float((x + y).var()), rel=0.01)
    # rho = 1 adds standard deviations, rho = -1 subtracts them: sigma_l = sigma_0 +- l b
    np.testing.assert_allclose(th.correlated_recursion(10, 1.0, sigma0_sq=4.0, b_sq=0.25), (2 + 0.5 * np.arange(11)) ** 2)
    np.testing.assert_allclose(th.correlated_recursion(3, -1.0, sigma0_sq=4.0, b_sq=0.25), (2 - 0.5 * np.arange(4)) ** 2)


def test_correlated_recursion_shapes():
    L = 400
    pre0 = th.correlated_recursion(L, 0.0, "pre")
    pre1 = th.correlated_recursion(L, 1.0, "pre")
    assert np.allclose(np.diff(pre0), 1.0)  # rho = 0: exactly linear (Xiong)
    assert pre1[L] / pre1[L // 2] == pytest.approx(4.0, rel=0.05)  # rho = 1: quadratic
    half = th.correlated_recursion(4000, 0.5, "pre")
    assert half[-1] / 4000**2 == pytest.approx(0.25, rel=0.05)  # sigma ~ rho b l: sigma^2 ~ rho^2 l^2
    np.testing.assert_allclose(th.correlated_recursion(30, 0.4, "peri"), th.correlated_recursion(30, 0.4, "pre"))
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
    lambda: th.block_jacobians(SMALL, blocks=[0]),
    lambda: th.lns_branch_scaling(SMALL, blocks=[SMALL.n_layers + 1]),
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


def test_theory_covers_every_placement_of_the_model():
    from curse_of_depth.model import NORMS

    assert th.NORMS == NORMS and "peri" in th.NORMS


@pytest.mark.parametrize("norm", ["pre", "lns", "post", "mix", "peri"])
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
    for norm in ("lns", "post", "mix", "peri"):
        ref = build_model(ModelConfig(**{**SMALL.to_dict(), "norm": norm}), seed=3)
        with norm_on(model, norm), torch.no_grad():
            assert torch.equal(model(idx).logits, ref(idx).logits)
    assert model.cfg.norm == "pre" and all(b.scale == 1.0 and not b.post and not b.peri for b in model.blocks)
    assert not any(hasattr(b, "ln_1_out") for b in model.blocks)  # Peri-LN's output norms were only borrowed
    peri = build_model(ModelConfig(**{**SMALL.to_dict(), "norm": "peri"}), seed=3)
    with norm_on(peri, "pre"), torch.no_grad():  # and the other way round
        assert torch.equal(peri(idx).logits, build_model(SMALL, seed=3)(idx).logits)
    assert all(b.peri for b in peri.blocks)


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
        hs = model(th.random_tokens(84, 4, 16, 10_000), output_hidden_states=True).hidden_states
        v = residual_variance_per_token(hs, skip_first=False).numpy()
    assert not th.check_growth_ratio_below(v, small_curves["pre"], 0.1).ok


def test_claim_post_flat_fails_for_pre_and_mix(small_curves):
    assert th.check_flat(small_curves["post"].mean).ok
    assert not th.check_flat(small_curves["pre"].mean).ok
    assert not th.check_flat(np.r_[0.0, np.ones(10), 1.08 * np.ones(10)]).ok


@pytest.fixture(scope="module")
def jacobians():
    cfg = ModelConfig(d_model=32, n_layers=64, n_heads=4, seq_len=8)
    blocks = th.log_spaced_blocks(64, 10)
    return th.block_jacobians(cfg, norms=("pre", "lns", "post", "peri"), seeds=(0,), blocks=blocks)


def test_claim_jacobian_decreasing_holds_for_pre_and_fails_for_post(jacobians):
    pre, post = jacobians.branch["pre"], jacobians.branch["post"]
    single = th.block_jacobians(ModelConfig(d_model=32, n_layers=64, n_heads=4, seq_len=8), norms=("pre",),
                                blocks=pre.blocks).branch["pre"]
    np.testing.assert_allclose(single.values, pre.values, rtol=1e-5)  # one model under norm_placement = built as pre
    assert th.check_decreasing(pre.blocks, pre.mean).ok
    assert not th.check_decreasing(post.blocks[1:], post.mean[1:]).ok
    assert not th.check_decreasing(pre.blocks, pre.mean[::-1]).ok


def test_branch_measure_post_ln_at_init_is_near_the_identity(jacobians):
    post = jacobians.branch["post"].mean[1:]  # block 1 reads the tiny embeddings; its path is a x50 rescaling
    deep_pre = jacobians.branch["pre"].mean[-1]
    assert post.max() < 0.02 and post.max() < deep_pre  # std-0.02 branches on a unit-RMS stream add little
    # the old distance from I is ~1/sqrt(d) for Post-LN: the norm's projection, not the branches' work
    total, path = jacobians.total["post"].mean[1:], jacobians.path["post"].mean[1:]
    np.testing.assert_allclose(path, 1 / math.sqrt(32), rtol=1e-3)
    np.testing.assert_allclose(total, path, rtol=0.1)
    assert total.min() > 5 * post.max()  # so "total" would wrongly call Post-LN blocks the busiest
    for n in ("pre", "lns", "peri"):  # residual blocks: the identity path is I, branch = total
        assert np.all(jacobians.path[n].values == 0.0)
        np.testing.assert_allclose(jacobians.branch[n].values, jacobians.total[n].values)


def test_branch_measure_pre_ln_deep_blocks_approach_identity_and_lns_further(jacobians):
    pre, lns = jacobians.branch["pre"], jacobians.branch["lns"]
    assert th.check_decreasing(pre.blocks, pre.mean).ok and pre.mean[-1] < 0.4 * pre.mean[0]
    assert th.check_decreasing(lns.blocks, lns.mean).ok
    deep = [i for i, b in enumerate(pre.blocks) if b >= 8]
    assert np.all(lns.mean[deep] < 0.5 * pre.mean[deep])  # LNS: a further ~1/sqrt(l)
    assert lns.mean[0] == pytest.approx(pre.mean[0])  # block 1: LNS's factor is 1
    # flipped: Pre-LN's stream is not re-normalized, Peri-LN's neither; both fall, Post-LN does not
    peri = jacobians.branch["peri"]
    assert th.check_decreasing(peri.blocks[1:], peri.mean[1:]).ok


def test_block_jacobians_match_autograd():
    cfg = ModelConfig(d_model=16, n_layers=3, n_heads=2, seq_len=6)
    eye = torch.eye(16)
    for norm in ("pre", "post"):
        c = ModelConfig(**{**cfg.to_dict(), "norm": norm})
        probe = th.block_jacobians(c, norms=(norm,), seeds=(0,), seq_len=5, token=2)
        model = build_model(c, seed=0)
        idx = th.random_tokens(cfg.vocab_size, 1, 5, 10_000)
        with torch.no_grad():
            hs = model(idx, output_hidden_states=True).hidden_states
        for i, b in enumerate(model.blocks):
            h = hs[i]

            def f(xt, b=b, h=h, rope=model.rope):
                return b(torch.cat([h[:, :2], xt[None, None], h[:, 3:]], 1), rope)[0, 2]

            J = torch.autograd.functional.jacobian(f, h[0, 2])
            with th.branches_off(b):
                J_path = torch.autograd.functional.jacobian(f, h[0, 2])
            if norm == "pre":
                assert torch.equal(J_path, eye)
            else:  # Post-LN: N(N(x)) at a unit-RMS stream projects out the radial direction
                if i > 0:
                    x = hs[i][0, 2]
                    proj = (eye - torch.outer(x, x) / x.dot(x)) / x.pow(2).mean().sqrt()
                    torch.testing.assert_close(J_path, proj, atol=2e-3, rtol=2e-3)
            assert probe.total[norm].values[0, i] == pytest.approx(((J - eye).norm() / 4).item(), rel=1e-4)
            assert probe.path[norm].values[0, i] == pytest.approx(((J_path - eye).norm() / 4).item(), rel=1e-4, abs=1e-7)
            assert probe.branch[norm].values[0, i] == pytest.approx(((J - J_path).norm() / J_path.norm()).item(), rel=1e-4)
        assert isinstance(b.attn, torch.nn.Module) and not isinstance(b.attn, th._NoBranch)  # restored


def test_lns_branch_scaling_attention_one_over_l_swiglu_one_over_l_squared():
    cfg = ModelConfig(d_model=64, n_layers=32, n_heads=4, seq_len=16)
    blocks = [1, 2, 4, 8, 16, 32]
    got = th.lns_branch_scaling(cfg, seeds=(0,), blocks=blocks)
    slopes = got.slopes()
    assert slopes["attention"] == pytest.approx(-1.0, abs=0.05)  # value path: variance / l
    assert slopes["mlp"] == pytest.approx(-2.0, abs=0.1)  # SwiGLU: gate and up both scaled: / l^2
    np.testing.assert_allclose(got.attention.mean, 1 / np.array(blocks), rtol=0.05)
    np.testing.assert_allclose(got.mlp.mean, 1 / np.array(blocks) ** 2, rtol=0.1)
    off = th.lns_branch_scaling(cfg, seeds=(0,), blocks=blocks, lns_power=0.0)  # no factor: nothing shrinks
    np.testing.assert_allclose(off.attention.mean, 1.0)
    np.testing.assert_allclose(off.mlp.mean, 1.0)
    assert off.slopes()["mlp"] == pytest.approx(0.0, abs=1e-6)


def test_peri_ln_grows_about_two_per_block_but_its_relative_update_shrinks_like_one_over_l(small_curves,
                                                                                          small_predictions):
    cfg = ModelConfig(d_model=128, n_layers=64, n_heads=4, seq_len=16, norm="peri")
    peri = th.mean_field_variance(cfg)
    pre = th.mean_field_variance(ModelConfig(**{**cfg.to_dict(), "norm": "pre"}))
    assert peri.increments[8:] == pytest.approx(2 * (1 - 1 / 128), rel=0.02)  # two unit-RMS outputs per block
    assert peri.increments[-1] > 500 * pre.increments[-1]  # far faster than Pre-LN's absolute growth at init
    layers = np.arange(1, 65)
    for p in (peri, pre):  # ... yet each block adds ~1/l of the stream it reads, in both
        assert (p.relative_increments * layers)[-16:] == pytest.approx(1.0, rel=0.15)
    lns = th.mean_field_variance(ModelConfig(**{**cfg.to_dict(), "norm": "lns"}))
    assert np.all((lns.relative_increments * layers)[-16:] < 0.5)  # LNS: smaller still
    # Monte-Carlo (SMALL, d = 64): linear, matching the derivation; the fixture's curves cover peri
    assert th.check_linear_growth(small_curves["peri"].mean).ok
    assert small_curves["peri"].mean[-1] > 1000 * small_curves["pre"].mean[-1]


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
    p = th.explore_variance(depth=16, width=32, norm="peri", rho=0.0, seq_len=8, batch=2)
    assert 1.0 < p["b_sq"] < 2.0 and p["measured"][-1] > 10  # Peri-LN: ~2 per block (eps-limited at width 32)


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
    assert th.shared_blocks(cfg, "pre", "peri") == 0 and th.shared_blocks(cfg, "peri", "peri") == 12


def test_measure_variance_equals_the_models_own_forward():
    cfg = ModelConfig(d_model=32, n_layers=12, n_heads=4, seq_len=8)
    curves = th.measure_variance(cfg, norms=("post", "pre", "mix", "lns", "peri"), seeds=(1, 2), batch=2)
    for i, seed in enumerate((1, 2)):
        idx = th.random_tokens(cfg.vocab_size, 2, 8, seed + 10_000)
        for norm, c in curves.items():
            model = build_model(ModelConfig(**{**cfg.to_dict(), "norm": norm}), seed=seed)
            with torch.no_grad():
                hs = model(idx, output_hidden_states=True).hidden_states
                ref = residual_variance_per_token(hs, skip_first=False).numpy()
            np.testing.assert_array_equal(c.per_seed[i], ref)  # mix continues post's stream: still bit-identical


def test_jacobians_of_a_branched_placement_equal_its_own_run():
    cfg = ModelConfig(d_model=16, n_layers=16, n_heads=2, seq_len=6)
    blocks = [1, 2, 4, 5, 9, 16]  # on both sides of Mix-LN's 4 Post-LN blocks
    mix = ModelConfig(**{**cfg.to_dict(), "norm": "mix"})
    both = th.block_jacobians(cfg, norms=("post", "mix"), seeds=(0,), blocks=blocks, seq_len=6)
    alone = th.block_jacobians(mix, norms=("mix",), blocks=blocks, seq_len=6)
    for m in ("branch", "path", "total"):
        np.testing.assert_array_equal(getattr(both, m)["mix"].values, getattr(alone, m)["mix"].values)
    # probing only blocks below the branch point: post still runs up to it, mix starts there
    low = th.block_jacobians(cfg, norms=("post", "mix"), seeds=(0,), blocks=[2, 3], seq_len=6)
    low_alone = th.block_jacobians(mix, norms=("mix",), blocks=[2, 3], seq_len=6)
    np.testing.assert_array_equal(low.branch["mix"].values, low_alone.branch["mix"].values)
    np.testing.assert_array_equal(low.branch["mix"].values[:, 0], both.branch["mix"].values[:, 1])  # block 2 in both


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
