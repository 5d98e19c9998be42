"""Checkers for notebook 05 (LayerNorm Scaling for your own Hugging Face model). Solutions:
notebooks/solutions/05_lns_for_your_model.ipynb.

Exercise 5.1 applies LNS by hand (forward hooks) to a tiny Qwen2 and a tiny Mistral built from a
config and compares the logits with ``layernorm_scaling.apply_layernorm_scaling`` on the same
weights; exercise 5.2 saves and reloads a model whose LNS lives in hand-made hooks and checks that
LNS survived."""

from __future__ import annotations

import copy
import functools
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ... import layernorm_scaling as lns
from ...hf import _no_hf_bars
from . import CORRECT, ERROR, Verdict, attempt, close, correct, not_attempted, wrong

VOCAB, SEQ, LAYERS = 64, 12, 4
_SMALL = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=LAYERS,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
NORMS = lns.NORM_NAMES  # ("input_layernorm", "post_attention_layernorm")


def tiny_model(arch: str = "qwen2", seed: int = 0) -> nn.Module:
    """A tiny Hugging Face ``Qwen2ForCausalLM`` or ``MistralForCausalLM`` (4 layers, width 32),
    built from a config (no download), with random norm gains so a factor in the wrong place
    shows. Notebook 05's exercises."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    cfg, cls = {
        "qwen2": (Qwen2Config(**_SMALL), Qwen2ForCausalLM),
        "mistral": (MistralConfig(**_SMALL, sliding_window=None), MistralForCausalLM),
    }[arch]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(cfg)
        with torch.no_grad():
            for layer in model.model.layers:
                for name in NORMS:
                    getattr(layer, name).weight.uniform_(0.5, 1.5)
            model.model.norm.weight.uniform_(0.5, 1.5)
    return model.eval()


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    return model(idx).logits.float()


def _one_thread(check: Callable) -> Callable:
    """Run a checker on one torch thread: its models are tiny, and idle threads only wait on a busy
    CPU."""

    @functools.wraps(check)
    def run(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


# ---------------------------------------------------------- LNS and its classic mistakes, as hooks


def _times(f: float) -> Callable:
    def hook(module, args, output):
        if isinstance(output, tuple):  # attention returns (output, weights)
            return (output[0] * f, *output[1:])
        return output * f

    return hook


def _times_input(f: float) -> Callable:
    def pre_hook(module, args):
        return (args[0] * f, *args[1:])

    return pre_hook


def hooked(
    model: nn.Module,
    factor: Callable[[int], float] = lambda i: 1 / math.sqrt(i + 1),
    where: str = "norm",
    which: tuple[str, ...] = NORMS,
    final: float | None = None,
) -> nn.Module:
    """``model`` (in place) with hooks multiplying by ``factor(i)`` in layer ``i`` (0-based) at
    ``where``: "norm" (the norms' outputs: LNS), "norm_input", "branch" (attention and MLP
    outputs), "stream_out" (the layer's output), "stream_in" (the layer's input); ``final`` also
    scales the final norm's output."""
    for i, layer in enumerate(model.model.layers):
        f = factor(i)
        if where == "norm":
            for name in which:
                getattr(layer, name).register_forward_hook(_times(f))
        elif where == "norm_input":
            for name in which:
                getattr(layer, name).register_forward_pre_hook(_times_input(f))
        elif where == "branch":
            layer.self_attn.register_forward_hook(_times(f))
            layer.mlp.register_forward_hook(_times(f))
        elif where == "stream_out":
            layer.register_forward_hook(_times(f))
        elif where == "stream_in":
            layer.register_forward_pre_hook(_times_input(f))
    if final is not None:
        model.model.norm.register_forward_hook(_times(final))
    return model


_STREAM_HINT = "LNS leaves the residual stream alone: it scales what each norm hands to its branch"
_FINAL = (
    "you also scaled the final norm (model.model.norm)",
    "LNS scales the two norms inside each decoder layer only; the final norm before the LM head "
    "stays as it is",
)
_ZERO_BASED = (
    "enumerate(model.model.layers) counts from 0, the paper's ℓ from 1: layer i gets "
    "1/sqrt(i + 1)"
)
# Each classic mistake: the ``hooked`` arguments that make it (n = number of layers), its name, a hint.
MISTAKES: list[tuple[Callable[[int], dict], str, str]] = [
    (lambda n: {"factor": lambda i: 1.0}, "no effect: these are the plain model's logits",
     "register a forward hook on each of the two norms of every layer that returns output * factor"),
    (lambda n: {"where": "norm_input"}, "you scaled the norms' *input*",
     "RMSNorm divides its input by its own RMS, so a factor before it (almost) cancels; scale the "
     "norm's output"),
    (lambda n: {"final": 1 / math.sqrt(n)}, *_FINAL),
    (lambda n: {"final": 1 / math.sqrt(n + 1)}, *_FINAL),
    (lambda n: {"factor": lambda i: 1 / math.sqrt(i) if i else 1.0},
     "0-based layer index: layer i got 1/√i", _ZERO_BASED),
    (lambda n: {"factor": lambda i: 1 / math.sqrt(i + 2)}, "off by one: layer i got 1/√(i + 2)",
     "the first decoder layer (i = 0) is ℓ = 1, factor 1: use 1/sqrt(i + 1)"),
    (lambda n: {"factor": lambda i: 1 / (i + 1)}, "1/ℓ instead of 1/√ℓ",
     "the factor is 1/sqrt(ℓ): it shrinks the branch input's *variance* by 1/ℓ"),
    (lambda n: {"where": "stream_out"}, "you scaled the residual stream (each layer's output)",
     _STREAM_HINT),
    (lambda n: {"where": "stream_in"}, "you scaled the residual stream (each layer's input)",
     _STREAM_HINT),
    (lambda n: {"where": "branch"}, "you scaled the branches' outputs (attention and MLP)",
     "scale the norms' outputs, i.e. the branches' *inputs*: attention and SwiGLU are not linear "
     "in them"),
    (lambda n: {"which": ("input_layernorm",)}, "only input_layernorm is scaled",
     "scale both norms of each layer: post_attention_layernorm feeds the MLP"),
    (lambda n: {"which": ("post_attention_layernorm",)}, "only post_attention_layernorm is scaled",
     "scale both norms of each layer: input_layernorm feeds attention"),
    (lambda n: {"factor": lambda i: 1 / (i + 1) ** 0.25}, "the factor is 1/ℓ^¼, not 1/√ℓ",
     "did you scale twice by 1/sqrt(sqrt(ℓ))? one factor of 1/sqrt(ℓ) per norm"),
]


def _lns_mistakes(model: nn.Module, idx: torch.Tensor) -> list[tuple[torch.Tensor, str, str]]:
    """What each classic mistake computes on ``model``: (logits, name, hint)."""
    n = len(model.model.layers)
    return [(_logits(hooked(copy.deepcopy(model), **make(n)), idx), mistake, hint)
            for make, mistake, hint in MISTAKES]


def _has_hooks(model: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def _kit_installed(model: nn.Module) -> bool:
    try:
        return lns.layernorm_scaling_factors(model) is not None
    except ValueError:
        return False


def _run_by_hand(ex: str, fn, model: nn.Module) -> tuple[nn.Module | None, Verdict | None]:
    """Call the attendee's ``fn(model)``; (the model it changed, None) or (None, the verdict that
    stops)."""
    def changed_model(m: nn.Module):  # the model it returned, or the one its hooks changed in place
        out = fn(m)
        return out if isinstance(out, nn.Module) else m if out is not None or _has_hooks(m) else None

    zero_based = {ZeroDivisionError: lambda exc: wrong(
        ex, f"ZeroDivisionError ({exc}): a 0-based layer index gave the first layer 1/√0", _ZERO_BASED)}
    return attempt(ex, None if fn is None else changed_model, model, mistakes=zero_based)


@_one_thread
def check_lns_by_hand(lns_by_hand) -> Verdict:
    """Exercise 5.1: ``lns_by_hand(model)`` puts LayerNorm Scaling on a Hugging Face Qwen2/Mistral
    model with forward hooks (in place; returning the model is optional), checked against
    ``apply_layernorm_scaling``."""
    ex = "5.1"
    idx = tokens()
    for arch in ("qwen2", "mistral"):
        base = tiny_model(arch)
        ref = _logits(lns.apply_layernorm_scaling(copy.deepcopy(base)), idx)
        mine, stop = _run_by_hand(ex, lns_by_hand, copy.deepcopy(base))
        if stop:
            return stop
        if _kit_installed(mine):
            return wrong(
                ex,
                "you called the kit's apply_layernorm_scaling",
                "write the hooks yourself: one register_forward_hook per norm, returning output * "
                "factor",
            )
        try:
            got = _logits(mine, idx)
        except Exception as exc:
            return Verdict(
                ex, ERROR, f"the model raised {type(exc).__name__} in its forward pass: {exc}"
            )
        if not torch.isfinite(got).all():
            return wrong(
                ex,
                "the logits are not finite: the first layer's factor was 1/√0 (a 0-based index?)",
                _ZERO_BASED,
            )
        if close(got, ref):
            continue
        for value, mistake, hint in _lns_mistakes(base, idx):
            if close(got, value):
                return wrong(ex, f"{mistake} ({arch})", hint)
        return wrong(
            ex,
            f"not LNS on the {arch} model (and not one of the usual mistakes)",
            "for i, layer in enumerate(model.model.layers): hook layer.input_layernorm and "
            "layer.post_attention_layernorm with output * (1 / sqrt(i + 1))",
        )
    return correct(
        ex,
        "both norms of decoder layer ℓ × 1/√ℓ, final norm untouched: the same logits as "
        "apply_layernorm_scaling on a tiny Qwen2 and a tiny Mistral",
    )


# ---------------------------------------------------------------------------------- the round trip


@_one_thread
def check_round_trip(save_and_reload) -> Verdict:
    """Exercise 5.2: ``save_and_reload(model, folder)`` saves a model whose LNS lives in hand-made
    hooks into ``folder``, reloads it, and returns a model with LNS intact (the same logits)."""
    ex = "5.2"
    if save_and_reload is None:
        return not_attempted(ex)
    idx = tokens()
    model = hooked(tiny_model("qwen2"))  # LNS by hand: the config says plain qwen2
    want, plain = _logits(model, idx), _logits(tiny_model("qwen2"), idx)
    twice = _logits(hooked(hooked(tiny_model("qwen2"))), idx)
    with tempfile.TemporaryDirectory() as folder, _no_hf_bars():
        try:
            out = save_and_reload(model, folder)
        except NotImplementedError:
            return not_attempted(ex)
        except ValueError as exc:
            if "not a LayerNorm Scaling checkpoint" in str(exc):
                return wrong(
                    ex,
                    "lns.from_pretrained refuses this folder: hooks are not saved, so config.json "
                    "says a plain qwen2",
                    "load it with AutoModelForCausalLM.from_pretrained(folder), "
                    "then put LNS back on the loaded model",
                )
            return Verdict(ex, ERROR, f"your code raised ValueError: {exc}")
        except Exception as exc:
            return Verdict(ex, ERROR, f"your code raised {type(exc).__name__}: {exc}")
        if out is None or out is Ellipsis:
            return not_attempted(ex)
        if out is model:
            return wrong(
                ex,
                "you returned the model you were given, not one reloaded from the folder",
                "model.save_pretrained(folder), then load a new model from folder and return that",
            )
        if not (Path(folder) / "config.json").exists():
            return wrong(
                ex, "nothing was saved in `folder`", "call model.save_pretrained(folder) first"
            )
        try:
            got = _logits(out, idx)
        except Exception as exc:
            return Verdict(ex, ERROR, f"the reloaded model raised {type(exc).__name__}: {exc}")
    if close(got, want):
        return correct(ex, "the reloaded model gives the LNS logits: LNS survived the round trip")
    if close(got, plain):
        return wrong(
            ex,
            "the reload silently lost LNS: a plain AutoModelForCausalLM (or Qwen2ForCausalLM) load "
            "gives the Pre-LN logits",
            "hooks are Python objects, not checkpoint entries, and config.json says a plain "
            "qwen2: put "
            "LNS back on the loaded model, then compare its logits with the original's",
        )
    if close(got, twice):
        return wrong(
            ex,
            "LNS is applied twice (1/ℓ per layer)",
            "put LNS back once, on a freshly loaded model",
        )
    return wrong(
        ex,
        "the reloaded model's logits are neither the LNS model's nor the plain model's",
        "save with model.save_pretrained(folder), load with "
        "AutoModelForCausalLM.from_pretrained(folder), "
        "then apply LNS once",
    )


__all__ = ["CORRECT", "check_lns_by_hand", "check_round_trip", "hooked", "tiny_model", "tokens"]
