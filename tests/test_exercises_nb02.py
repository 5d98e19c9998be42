"""Notebook 02's checkers recognize the correct answer, a blank cell, an error, and each classic mistake by name."""

import math

import pytest

from curse_of_depth.workshop.exercises import nb02


def lns_variant(where="norm", factor=lambda layer: 1 / math.sqrt(layer), which=("attn", "mlp")):
    def fn(block, x, rope):
        s = factor(block.layer)
        sa, sm = (s if "attn" in which else 1.0), (s if "mlp" in which else 1.0)
        return nb02._lns(block, x, rope, sa, sm, where)
    return fn


def test_lns_block_correct_blank_and_error():
    assert nb02.check_lns_block(lns_variant()).ok
    assert "correct" in str(nb02.check_lns_block(lns_variant()))

    def blank(block, x, rope):
        ...
    assert nb02.check_lns_block(blank).status == "not attempted"
    assert "not attempted yet" in str(nb02.check_lns_block(blank))

    def broken(block, x, rope):
        return block.nope(x)
    v = nb02.check_lns_block(broken)
    assert v.status == "error" and "AttributeError" in str(v)


@pytest.mark.parametrize("fn,words", [
    (lns_variant(factor=lambda layer: 1.0), "plain Pre-LN"),
    (lns_variant(factor=lambda layer: 1 / math.sqrt(layer + 1)), "as if block.layer were 0-based"),
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
    assert "\n" not in repr(v) and repr(v) == str(v) and str(v).startswith("✗ Exercise 2.1")
