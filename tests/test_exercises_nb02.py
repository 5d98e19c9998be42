"""Notebook 02's checkers recognize the correct answer, a blank cell, an error, and each classic mistake by name."""

import math

import numpy as np
import pytest

from curse_of_depth import theory
from curse_of_depth.workshop.exercises import nb02

# ------------------------------------------------------------------------------------ 2.1 the Pre-LN block


def pre_ln(block, x, rope):
    x = x + block.attn(block.ln_1(x), rope)
    return x + block.mlp(block.ln_2(x))


def blank(*args, **kwargs):
    ...


def test_pre_ln_block_correct_blank_and_error():
    v = nb02.check_pre_ln_block(pre_ln)
    assert v.ok and str(v).startswith("✓ Exercise 2.1") and "kit's Block" in str(v)
    assert nb02.check_pre_ln_block(blank).status == "not attempted"
    v = nb02.check_pre_ln_block(lambda block, x, rope: block.attn(block.ln_1(x)))  # rope forgotten
    assert v.status == "error" and "TypeError" in str(v)


def _post(b, x, r):
    x = b.ln_1(x + b.attn(x, r))
    return b.ln_2(x + b.mlp(x))


def _both(b, x, r):
    x = b.ln_1(x + b.attn(b.ln_1(x), r))
    return b.ln_2(x + b.mlp(b.ln_2(x)))


def _same(first, second):
    def fn(b, x, r):
        x = x + b.attn(getattr(b, first)(x), r)
        return x + b.mlp(getattr(b, second)(x))
    return fn


@pytest.mark.parametrize("fn,words", [
    (_post, "this is Post-LN"),
    (_both, "normalized the stream after each add"),
    (lambda b, x, r: (x + b.attn(x, r)) + b.mlp(x + b.attn(x, r)), "no norm"),
    (lambda b, x, r: b.attn(b.ln_1(x), r) + b.mlp(b.ln_2(b.attn(b.ln_1(x), r))), "attention half has no residual"),
    (lambda b, x, r: b.mlp(b.ln_2(x + b.attn(b.ln_1(x), r))), "MLP half has no residual"),
    (lambda b, x, r: b.mlp(b.ln_2(b.attn(b.ln_1(x), r))), "no residual connection in either half"),
    (_same("ln_1", "ln_1"), "the same norm (ln_1) is used twice"),
    (_same("ln_2", "ln_2"), "the same norm (ln_2) is used twice"),
    (_same("ln_2", "ln_1"), "the two norms are swapped"),
    (lambda b, x, r: x + b.attn(b.ln_1(x), r) + b.mlp(b.ln_2(x)), "MLP reads the block's input x"),
    (lambda b, x, r: x + b.attn(b.ln_1(x), r), "the MLP half is missing"),
])
def test_each_pre_ln_mistake_gets_its_own_message(fn, words):
    v = nb02.check_pre_ln_block(fn)
    assert v.status == "wrong" and words in str(v), str(v)


def test_pre_ln_messages_are_distinct():
    names = [m for _, m, _ in nb02._pre_ln_mistakes(*nb02._case(3, seed=1))]
    assert len(names) == len(set(names))


# ------------------------------------------------------------------------------------ 2.2 LNS


def lns_variant(where="norm", factor=lambda layer: 1 / math.sqrt(layer), which=("attn", "mlp")):
    def fn(block, x, rope):
        s = factor(block.layer)
        sa, sm = (s if "attn" in which else 1.0), (s if "mlp" in which else 1.0)
        return nb02._lns(block, x, rope, sa, sm, where)
    return fn


def test_lns_block_correct_blank_and_error():
    assert nb02.check_lns_block(lns_variant()).ok
    assert "correct" in str(nb02.check_lns_block(lns_variant()))
    assert nb02.check_lns_block(blank).status == "not attempted"
    assert "not attempted yet" in str(nb02.check_lns_block(blank))

    def broken(block, x, rope):
        return block.nope(x)
    v = nb02.check_lns_block(broken)
    assert v.status == "error" and "AttributeError" in str(v)


@pytest.mark.parametrize("fn,words", [
    (lns_variant(factor=lambda layer: 1.0), "plain Pre-LN"),
    (lns_variant(factor=lambda layer: 1 / math.sqrt(layer + 1)), "as if block.layer were 0-based"),
    (lns_variant(factor=lambda layer: 1 / math.sqrt(max(layer - 1, 1))), "1/sqrt(layer - 1)"),
    (lns_variant(factor=lambda layer: 1 / layer), "1/ℓ instead of 1/√ℓ"),
    (lns_variant(where="stream"), "scaled the residual stream"),
    (lns_variant(where="branch"), "scaled the branch's output"),
    (lns_variant(which=("attn",)), "only the attention input"),
    (lns_variant(which=("mlp",)), "only the MLP input"),
])
def test_each_lns_mistake_gets_its_own_message(fn, words):
    v = nb02.check_lns_block(fn)
    assert v.status == "wrong" and words in str(v), str(v)


def test_verdict_is_one_line():
    v = nb02.check_lns_block(lns_variant(factor=lambda layer: 1 / layer))
    assert "\n" not in repr(v) and repr(v) == str(v) and str(v).startswith("✗ Exercise 2.2")


def test_stack_variance_runs_your_blocks_and_leaves_out_blank_ones():
    kw = dict(depth=12, width=32, batch=2, seq_len=8)
    got = nb02.stack_variance({"pre": pre_ln, "lns": lns_variant(), "kit": nb02._kit_block, "blank": blank}, **kw)
    assert got["blank"] is None and len(got["pre"]) == 13
    np.testing.assert_allclose(got["pre"], got["kit"])
    cfg = theory.ModelConfig(d_model=32, n_layers=12, n_heads=4, seq_len=8)
    measured = theory.measure_variance(cfg, norms=("pre", "lns"), seeds=(0,), batch=2, seq_len=8)
    np.testing.assert_allclose(got["pre"], measured["pre"].mean, rtol=1e-5)  # the same stream as the kit's probe
    np.testing.assert_allclose(got["lns"], measured["lns"].mean, rtol=1e-5)


# ------------------------------------------------------------------------------------ 2.3 other powers


def growth_exponent(p, rho, L=1024):
    s2, half = 1.0, None
    for layer in range(1, L + 1):
        b = layer ** -p
        s2 = s2 + b * b + 2 * rho * math.sqrt(s2) * b
        if layer == L // 2:
            half = s2
    return math.log2(s2 / half)


def test_growth_exponent_reference_is_the_theory_recursion():
    for p, rho, L in nb02._POWER_CASES:
        s2 = theory.correlated_recursion(L, rho, "lns", lns_power=p)
        assert nb02._exponent(p, rho, L) == pytest.approx(math.log2(s2[L] / s2[L // 2]), abs=1e-9)


def test_growth_exponent_correct_blank_and_error():
    assert nb02.check_growth_exponent(growth_exponent).ok
    assert nb02.check_growth_exponent(blank).status == "not attempted"
    v = nb02.check_growth_exponent(lambda p, rho, L=1024: 0 ** -p)  # a 0-based l: 0 ** -p
    assert v.status == "error" and "ZeroDivisionError" in str(v)


def _variant(**kw):
    return lambda p, rho, L=1024: nb02._exponent(p, rho, L, **kw)


@pytest.mark.parametrize("fn,words", [
    (_variant(cross=1.0), "paper's ρ"),
    (_variant(cross=0.0), "no cross term"),
    (lambda p, rho, L=1024: nb02._exponent(p, rho, L, b_power=p / 2), "ℓ^−p multiplies b²"),
    (lambda p, rho, L=1024: nb02._exponent(0.0, rho, L), "the power p is never used"),
    (_variant(of_sigma=True), "slope of σ, not of σ²"),
    (_variant(log_base=math.e), "not divided by log 2"),
    (_variant(use_L=False), "L is ignored"),
])
def test_each_growth_exponent_mistake_gets_its_own_message(fn, words):
    v = nb02.check_growth_exponent(fn)
    assert v.status == "wrong" and words in str(v), str(v)


def test_exponent_table_uses_yours_only_when_it_passes(capsys):
    nb02.exponent_table(growth_exponent, powers=(0.5,))
    assert capsys.readouterr().out.startswith("your growth_exponent")
    nb02.exponent_table(blank, powers=(0.5,))
    out = capsys.readouterr().out
    assert out.startswith("the kit's growth_exponent") and "1.01" in out


# ------------------------------------------------------------------------------------ 2.4 the reading


def test_power_reading_correct_and_blank():
    assert nb02.check_power_reading(lambda: (0.5, 1.0)).ok
    assert nb02.check_power_reading(lambda: (1 / 2, 1)).ok
    assert nb02.check_power_reading(blank).status == "not attempted"


@pytest.mark.parametrize("answer,words", [
    ((0.0, 0.5), "ρ = 0 column"),
    ((1.0, 0.5), "swapped"),
    ((0.0, 1.0), "p = 0 is Pre-LN"),
    ((0.25, 1.0), "slope tends to 1.5"),
    ((0.5, 1.25), "so is p = 1 already"),
    ((0.5, 0.75), "still grows like ℓ^0.5"),
    ("half", "expected two numbers"),
])
def test_each_reading_mistake_gets_its_own_message(answer, words):
    v = nb02.check_power_reading(lambda: answer)
    assert v.status == "wrong" and words in str(v), str(v)


def test_power_reading_three_quarters_heads_to_half_not_zero():
    v = nb02.check_power_reading(lambda: (0.5, 0.75))
    assert "heads to 2 − 2p = 0.5 > 0" in str(v), str(v)


def test_power_reading_error():
    v = nb02.check_power_reading(lambda: 1 / 0)
    assert v.status == "error" and "ZeroDivisionError" in str(v)


def test_plot_your_stack_draws_what_works_and_names_what_does_not(capsys):
    import matplotlib

    matplotlib.use("Agg")
    nb02.plot_your_stack(pre_ln, blank, depth=8, width=32, batch=2, seq_len=8)
    out = capsys.readouterr().out
    assert "your LNS block: not ready yet" in out and "your Pre-LN block: variance" in out
    assert out.count("kit's") == 2
