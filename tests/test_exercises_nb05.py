"""Notebook 05's checkers recognize the correct answer, a blank cell, an error, and each classic mistake by name."""

import math

import pytest
from transformers import AutoModelForCausalLM, Qwen2ForCausalLM

import curse_of_depth.layernorm_scaling as lns
from curse_of_depth.workshop.exercises import nb05


def by_hand(model):
    """The solution of exercise 5.1: a forward hook on both norms of layer i (0-based), output × 1/√(i + 1)."""
    for i, layer in enumerate(model.model.layers):
        f = 1 / math.sqrt(i + 1)
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            norm.register_forward_hook(lambda module, args, output, f=f: output * f)
    return model


def test_lns_by_hand_correct_in_place_blank_and_error():
    v = nb05.check_lns_by_hand(by_hand)
    assert v.ok and "Qwen2" in str(v) and "Mistral" in str(v), str(v)
    assert nb05.check_lns_by_hand(lambda m: (by_hand(m), None)[1]).ok  # in place, returning nothing, is fine

    def blank(model):
        ...
    assert nb05.check_lns_by_hand(blank).status == "not attempted"
    assert "not attempted yet" in str(nb05.check_lns_by_hand(None))

    def broken(model):
        return model.model.nope
    v = nb05.check_lns_by_hand(broken)
    assert v.status == "error" and "AttributeError" in str(v)


def zero_division(model):
    for i, layer in enumerate(model.model.layers):
        f = 1 / math.sqrt(i)
        layer.input_layernorm.register_forward_hook(lambda m, a, out, f=f: out * f)


def torch_inf(model):
    import torch
    for i, layer in enumerate(model.model.layers):
        f = torch.tensor(float(i)).rsqrt()
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            norm.register_forward_hook(lambda m, a, out, f=f: out * f)


@pytest.mark.parametrize("fn,words", [
    (lambda m: nb05.hooked(m, final=1 / math.sqrt(4)), "scaled the final norm (model.model.norm)"),
    (lambda m: nb05.hooked(m, final=1 / math.sqrt(5)), "scaled the final norm (model.model.norm)"),
    (lambda m: nb05.hooked(m, factor=lambda i: 1 / math.sqrt(i) if i else 1.0), "0-based layer index"),
    (zero_division, "a 0-based layer index gave the first layer 1/√0"),
    (torch_inf, "not finite"),
    (lambda m: nb05.hooked(m, factor=lambda i: 1 / math.sqrt(i + 2)), "off by one"),
    (lambda m: nb05.hooked(m, factor=lambda i: 1 / (i + 1)), "1/ℓ instead of 1/√ℓ"),
    (lambda m: nb05.hooked(m, where="stream_out"), "scaled the residual stream"),
    (lambda m: nb05.hooked(m, where="stream_in"), "scaled the residual stream"),
    (lambda m: nb05.hooked(m, where="branch"), "scaled the branches' outputs"),
    (lambda m: nb05.hooked(m, where="norm_input"), "scaled the norms' *input*"),
    (lambda m: nb05.hooked(m, which=("input_layernorm",)), "only input_layernorm"),
    (lambda m: nb05.hooked(m, which=("post_attention_layernorm",)), "only post_attention_layernorm"),
    (lambda m: nb05.hooked(m, factor=lambda i: 1.0), "no effect"),
    (lns.apply_layernorm_scaling, "you called the kit's apply_layernorm_scaling"),
])
def test_each_lns_by_hand_mistake_gets_its_own_message(fn, words):
    v = nb05.check_lns_by_hand(fn)
    assert v.status == "wrong" and words in str(v), str(v)


def reload_and_reapply(model, folder):
    model.save_pretrained(folder)
    return by_hand(AutoModelForCausalLM.from_pretrained(folder))


def reload_with_the_kit(model, folder):
    model.save_pretrained(folder)
    return lns.apply_layernorm_scaling(AutoModelForCausalLM.from_pretrained(folder))


@pytest.mark.parametrize("fn", [reload_and_reapply, reload_with_the_kit])
def test_round_trip_correct(fn):
    v = nb05.check_round_trip(fn)
    assert v.ok and "survived" in str(v), str(v)


def test_round_trip_blank_and_error():
    def blank(model, folder):
        ...
    assert nb05.check_round_trip(blank).status == "not attempted"
    v = nb05.check_round_trip(lambda model, folder: model.save_pretrained(folder / "x"))
    assert v.status == "error" and "TypeError" in str(v), str(v)


def plain_auto(model, folder):
    model.save_pretrained(folder)
    return AutoModelForCausalLM.from_pretrained(folder)


def stock_class(model, folder):
    model.save_pretrained(folder)
    return Qwen2ForCausalLM.from_pretrained(folder)


def kit_loader(model, folder):
    model.save_pretrained(folder)
    return lns.from_pretrained(folder)


def twice(model, folder):
    model.save_pretrained(folder)
    return by_hand(by_hand(AutoModelForCausalLM.from_pretrained(folder)))


def not_saved(model, folder):
    import copy
    return copy.deepcopy(model)


@pytest.mark.parametrize("fn,words", [
    (plain_auto, "silently lost LNS"),
    (stock_class, "silently lost LNS"),
    (kit_loader, "lns.from_pretrained refuses this folder"),
    (twice, "applied twice"),
    (lambda model, folder: model, "you returned the model you were given"),
    (not_saved, "nothing was saved"),
])
def test_each_round_trip_mistake_gets_its_own_message(fn, words):
    v = nb05.check_round_trip(fn)
    assert v.status == "wrong" and words in str(v), str(v)


def test_verdicts_are_one_line():
    for v in (nb05.check_lns_by_hand(lambda m: nb05.hooked(m, where="branch")), nb05.check_round_trip(plain_auto)):
        assert "\n" not in repr(v) and repr(v) == str(v) and str(v).startswith("✗ Exercise 5.")
