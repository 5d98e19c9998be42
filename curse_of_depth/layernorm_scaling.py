"""LayerNorm Scaling (LNS) on Hugging Face LLaMA-family decoders, one reversible call. Notebook 05.

LNS (arXiv 2502.05795, Eq. 12): inside decoder layer l (1-based) the outputs of both norms,
``input_layernorm`` (feeds attention) and ``post_attention_layernorm`` (feeds the MLP), are
multiplied by 1/sqrt(l) after the gain; the final norm, the embeddings and the residual stream are
untouched and no parameter is added. Each norm gets a plain float ``lns_scale`` and a forward hook
that applies it, and the model's and config's classes become kit subclasses
(``LNSLlamaForCausalLM``, model type ``lns_llama``) that save the factors in ``config.json``. Why
hooks, and what each way of loading a saved LNS model does: ``docs/layernorm_scaling.md``. Training
from scratch: never combine LNS with a depth-scaled init of the residual output projections (the
paper's footnote 1); ``check_init`` measures it, ``new_lns_model`` refuses it.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaForCausalLM,
    MistralForCausalLM,
    PreTrainedConfig,
    PreTrainedModel,
    Qwen2ForCausalLM,
)

from .hf import decoder_layers

PREFIX = "lns_"  # model_type of an LNS checkpoint = PREFIX + the base model_type
NORM_NAMES = ("input_layernorm", "post_attention_layernorm")
TESTED = {"llama": "Llama (SmolLM, SmolLM2, Llama 2/3)", "mistral": "Mistral",
          "qwen2": "Qwen2 / Qwen2.5"}
# Layers that carry these extra norms use post_attention_layernorm on the attention *output*
# (Gemma 2/3 sandwich norms), so scaling it would not be LNS.
SANDWICH_NORMS = ("pre_feedforward_layernorm", "post_feedforward_layernorm")


def supported() -> str:
    """One line naming what ``apply_layernorm_scaling`` accepts (used in every refusal)."""
    tested = ", ".join(TESTED.values())
    return (f"tested: {tested}; also any decoder whose layers (model.model.layers) carry "
            f"`input_layernorm` feeding attention and `post_attention_layernorm` feeding the MLP "
            f"(not Gemma-2/3-style sandwich norms, not OLMo-2's post-norms)")


# ---------------------------------------------------------------- the hook


def _lns_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    """Multiply a norm's output (after its gain) by the module's plain-float ``lns_scale``."""
    scale = module.lns_scale
    return None if scale == 1.0 else output * scale


def _hook_ids(norm: nn.Module) -> list[int]:
    return [k for k, fn in norm._forward_hooks.items() if fn is _lns_hook]


# ------------------------------------------------------- finding the layers


def _lns_layers(model: nn.Module) -> nn.ModuleList:
    """``hf.decoder_layers(model)``, refused unless each layer has the norm pair LNS scales."""
    name = type(model).__name__
    model_type = getattr(getattr(model, "config", None), "model_type", "?")
    try:
        layers = decoder_layers(model)
    except TypeError:
        raise ValueError(f"{name} (model_type={model_type!r}) has no decoder layers at "
                         "model.model.layers; LayerNorm Scaling supports LLaMA-family decoders -- "
                         f"{supported()}") from None
    for i, layer in enumerate(layers):
        missing = [n for n in NORM_NAMES if not isinstance(getattr(layer, n, None), nn.Module)]
        if missing:
            raise ValueError(f"{name} (model_type={model_type!r}): decoder layer {i} has no "
                             f"{', '.join(missing)}; LayerNorm Scaling supports LLaMA-family "
                             f"decoders -- {supported()}")
        sandwich = [n for n in SANDWICH_NORMS if hasattr(layer, n)]
        if sandwich:
            raise ValueError(f"{name} (model_type={model_type!r}) uses sandwich norms "
                             f"({', '.join(sandwich)}): its post_attention_layernorm normalizes "
                             "the attention output, not the MLP input, so scaling it is not LNS. "
                             f"Supported -- {supported()}")
    return layers


# ------------------------------------------------ kit subclasses (round trip)

# base model class -> (LNS config class, LNS model class); base config class -> LNS config class
_CLASSES: dict[type, tuple[type, type]] = {}
_CONFIGS: dict[type, type] = {}


def _lns_config_class(base_cfg: type) -> type:
    if base_cfg not in _CONFIGS:
        model_type = PREFIX + base_cfg.model_type
        cfg_cls = type(f"LNS{base_cfg.__name__}", (base_cfg,), {
            "__module__": __name__,
            "__annotations__": {"lns_factors": "list[float] | None"},
            "lns_factors": None,
            "model_type": model_type,
            "__doc__": f"{base_cfg.__name__} plus ``lns_factors``: the LayerNorm Scaling factor of "
                       "each decoder layer.",
        })
        cfg_cls.__qualname__ = cfg_cls.__name__
        globals().setdefault(cfg_cls.__name__, cfg_cls)  # picklable under this module's name
        AutoConfig.register(model_type, cfg_cls, exist_ok=True)
        _CONFIGS[base_cfg] = cfg_cls
    return _CONFIGS[base_cfg]


def _lns_classes(base_model_cls: type) -> tuple[type, type]:
    """The kit's (config, model) subclasses of ``base_model_cls``, made once and registered."""
    if base_model_cls in _CLASSES:
        return _CLASSES[base_model_cls]
    cfg_cls = _lns_config_class(base_model_cls.config_class)

    def __init__(self, config, *args, **kwargs):
        base_model_cls.__init__(self, config, *args, **kwargs)
        _install(self, _factors_for(self, getattr(config, "lns_factors", None)))

    def save_pretrained(self, *args, **kwargs):
        # Factors are read from the modules at save time, so a model pruned after apply (e.g. with
        # curse_of_depth.hf.drop_layers) saves each surviving layer's own factor.
        current = layernorm_scaling_factors(self)
        if current is None or any(a != b for a, b in current):
            raise ValueError("cannot save: LayerNorm Scaling is missing or differs between a "
                             f"layer's two norms ({current}); re-apply it with "
                             "apply_layernorm_scaling")
        self.config.lns_factors = [a for a, _ in current]
        return base_model_cls.save_pretrained(self, *args, **kwargs)

    model_cls = type(f"LNS{base_model_cls.__name__}", (base_model_cls,), {
        "__module__": __name__,
        "__init__": __init__,
        "save_pretrained": save_pretrained,
        "config_class": cfg_cls,
        "__doc__": f"{base_model_cls.__name__} with LayerNorm Scaling "
                   "(curse_of_depth.layernorm_scaling).",
    })
    model_cls.__qualname__ = model_cls.__name__
    globals().setdefault(model_cls.__name__, model_cls)
    # other heads load through their own Auto class
    if base_model_cls.__name__.endswith("ForCausalLM"):
        AutoModelForCausalLM.register(cfg_cls, model_cls, exist_ok=True)
    _CLASSES[base_model_cls] = (cfg_cls, model_cls)
    return cfg_cls, model_cls


def _base_class(model: nn.Module) -> type:
    """The stock class under a possibly kit-swapped model."""
    cls = type(model)
    for base, (_, lns) in _CLASSES.items():
        if cls is lns:
            return base
    return cls


# The tested families exist at import: a fresh Python that imports the kit loads their checkpoints.
LNSLlamaConfig, LNSLlamaForCausalLM = _lns_classes(LlamaForCausalLM)
LNSMistralConfig, LNSMistralForCausalLM = _lns_classes(MistralForCausalLM)
LNSQwen2Config, LNSQwen2ForCausalLM = _lns_classes(Qwen2ForCausalLM)


# ------------------------------------------------------------ apply / remove


def default_factors(n_layers: int) -> list[float]:
    """1/sqrt(l) for l = 1..n_layers: the paper's factors (layer 1 is unscaled)."""
    return [1.0 / math.sqrt(layer) for layer in range(1, n_layers + 1)]


def _factors_for(model: nn.Module, factors) -> list[float]:
    n = len(_lns_layers(model))
    if factors is None:
        return default_factors(n)
    factors = [float(f) for f in factors]
    if len(factors) != n:
        raise ValueError(f"got {len(factors)} LNS factors for a model with {n} decoder layers; "
                         "pass one per layer (or none, for the paper's 1/sqrt(l))")
    bad = [f for f in factors if not (math.isfinite(f) and f > 0)]
    if bad:
        raise ValueError(f"LNS factors must be positive finite numbers, got {bad[:3]}")
    return factors


def _install(model: nn.Module, factors: list[float]) -> None:
    for layer, f in zip(_lns_layers(model), factors):
        for n in NORM_NAMES:
            norm = getattr(layer, n)
            norm.lns_scale = f  # a plain float: never a parameter, buffer or checkpoint entry
            norm.register_forward_hook(_lns_hook)


def _installed(model: nn.Module) -> list[tuple[float, float]] | None:
    """Per-layer (input_layernorm, post_attention_layernorm) factors actually in effect, or None."""
    out, seen = [], False
    for layer in _lns_layers(model):
        pair = []
        for n in NORM_NAMES:
            norm = getattr(layer, n)
            active = bool(_hook_ids(norm)) and hasattr(norm, "lns_scale")
            seen |= active
            pair.append(norm.lns_scale if active else 1.0)
        out.append(tuple(pair))
    return out if seen or type(model) is not _base_class(model) else None


def apply_layernorm_scaling(model: PreTrainedModel,
                            factors: list[float] | None = None) -> PreTrainedModel:
    """LayerNorm Scaling on a Hugging Face LLaMA-family decoder, in place (notebook 05): both norms
    of layer l scaled by ``factors[l-1]`` (default 1/sqrt(l)), or by the config's stored
    ``lns_factors``. Applying it twice is refused; ``remove_layernorm_scaling`` undoes it."""
    if not isinstance(model, PreTrainedModel):
        raise ValueError("apply_layernorm_scaling needs a Hugging Face PreTrainedModel, got "
                         f"{type(model).__name__}: apply it before wrapping the model (PEFT, DDP, "
                         "FSDP); for the kit's own decoder use "
                         "curse_of_depth.build_model(norm='lns')")
    _lns_layers(model)  # refuses unsupported architectures before anything changes
    current = _installed(model)
    if current is not None:
        raise ValueError(
            f"LayerNorm Scaling is already applied to this {type(model).__name__} (layer 2 factor "
            f"{current[1][0] if len(current) > 1 else current[0][0]:.4f}); applying it again would "
            "multiply by 1/sqrt(l) twice. Call remove_layernorm_scaling(model) first if you want "
            "to re-apply it.")
    stored = getattr(model.config, "lns_factors", None)
    factors = _factors_for(model, factors if factors is not None else stored)
    cfg_cls, model_cls = _lns_classes(type(model))
    _install(model, factors)
    model.__class__ = model_cls
    # A config read from a file may carry model_type as an instance attribute; park it on the model
    # (models are never serialized as attributes) so config.model_type reads "lns_<base>", and give
    # it back on removal.
    model._lns_parked_model_type = model.config.__dict__.pop("model_type", None)
    model.config.__class__ = cfg_cls
    model.config.lns_factors = list(factors)
    return model


def remove_layernorm_scaling(model: PreTrainedModel) -> PreTrainedModel:
    """Undo ``apply_layernorm_scaling`` in place: hooks, factors and classes go; the forward is
    bit-identical again. Raises ``ValueError`` without LayerNorm Scaling. Notebook 05."""
    if _installed(model) is None:
        raise ValueError(f"this {type(model).__name__} has no LayerNorm Scaling to remove "
                         "(apply it with apply_layernorm_scaling(model))")
    for layer in _lns_layers(model):
        for n in NORM_NAMES:
            norm = getattr(layer, n)
            for k in _hook_ids(norm):
                del norm._forward_hooks[k]
            if "lns_scale" in norm.__dict__:
                del norm.lns_scale
    base = _base_class(model)
    model.__class__ = base
    model.config.__class__ = base.config_class
    model.config.__dict__.pop("lns_factors", None)
    parked = model.__dict__.pop("_lns_parked_model_type", None)
    if parked is not None:
        model.config.model_type = parked
    return model


def layernorm_scaling_factors(model: PreTrainedModel) -> list[tuple[float, float]] | None:
    """Per layer, the (input_layernorm, post_attention_layernorm) factors in effect, or None; raises
    when the config stores ``lns_factors`` but the model runs without them (an LNS checkpoint loaded
    through the stock class). Notebook 05."""
    current = _installed(model)
    stored = getattr(getattr(model, "config", None), "lns_factors", None)
    if current is None and stored is not None:
        raise ValueError(
            f"this {type(model).__name__} was saved with LayerNorm Scaling (config.lns_factors) "
            "but runs without it -- it was probably loaded through the stock class. Call "
            "apply_layernorm_scaling(model) to restore the saved factors, or load it with "
            "curse_of_depth.layernorm_scaling.from_pretrained(path).")
    return current


def has_layernorm_scaling(model: PreTrainedModel) -> bool:
    """True when LayerNorm Scaling is in effect (``layernorm_scaling_factors``). Notebook 05."""
    return layernorm_scaling_factors(model) is not None


@torch.no_grad()
def max_logit_gap(a: nn.Module, b: nn.Module, idx: torch.Tensor) -> float:
    """Largest absolute logit difference between two causal LMs (the kit's or Hugging Face's) on
    ``idx``; notebook 05 checks that LNS on a Hugging Face Llama equals the kit's LNS model."""
    return (a(idx).logits.float() - b(idx).logits.float()).abs().max().item()


# ---------------------------------------------------------------- loading


def from_pretrained(path, **kwargs: Any) -> PreTrainedModel:
    """An LNS checkpoint from ``save_pretrained`` with its LayerNorm Scaling intact (notebook 05);
    ``kwargs`` go to ``AutoModelForCausalLM.from_pretrained``. A checkpoint without LNS raises."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    hub = {k: v for k, v in kwargs.items() if k in ("local_files_only", "revision", "token")}
    config_dict, _ = PreTrainedConfig.get_config_dict(str(path), **hub)
    model_type = config_dict.get("model_type", "")
    if not model_type.startswith(PREFIX):
        raise ValueError(f"{path} is not a LayerNorm Scaling checkpoint "
                         f"(model_type={model_type!r}); load it with "
                         "AutoModelForCausalLM.from_pretrained and call "
                         "apply_layernorm_scaling(model)")
    base_type = model_type[len(PREFIX):]
    if model_type not in CONFIG_MAPPING:
        import transformers
        name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(base_type)
        if name is None:
            raise ValueError(f"{path}: base model type {base_type!r} is not a causal LM this "
                             f"transformers {transformers.__version__} knows; {supported()}")
        _lns_classes(getattr(transformers, name))
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if layernorm_scaling_factors(model) is None:  # defensive: the classes above always install it
        raise RuntimeError(f"loading {path} lost LayerNorm Scaling; please report this")
    return model


# ------------------------------------------------------ training from scratch


@dataclass
class InitReport:
    """Per layer, std of the residual-output projections over the input projections' at init."""

    o_over_q: list[float]  # std(o_proj) / std(q_proj), same fan-in when heads * head_dim = hidden
    down_over_gate: list[float]  # std(down_proj) / std(gate_proj)
    depth_scaled: bool
    reason: str


def check_init(model: nn.Module, threshold: float = 0.7, action: str = "raise") -> InitReport:
    """Whether a fresh model uses depth-scaled init, which must not be combined with LNS (notebook
    05): std(o_proj) / std(q_proj) per layer is ~1 under plain init, 1/sqrt(2L) under GPT-2-style
    scaled init, falling with depth under DS-Init. ``action``: "raise", "warn" or "report"."""
    if action not in ("raise", "warn", "report"):
        raise ValueError(f"action must be 'raise', 'warn' or 'report', got {action!r}")
    o_q, d_g = [], []
    for i, layer in enumerate(_lns_layers(model)):
        try:
            attn, mlp = layer.self_attn, layer.mlp
            o_q.append((attn.o_proj.weight.std() / attn.q_proj.weight.std()).item())
            d_g.append((mlp.down_proj.weight.std() / mlp.gate_proj.weight.std()).item())
        except AttributeError as exc:
            raise ValueError(f"layer {i} lacks self_attn.{{q,o}}_proj / mlp.{{gate,down}}_proj; "
                             "check_init reads LLaMA-style projection names") from exc
    ratio = statistics.median(o_q)
    trend = o_q[-1] / o_q[0]
    if trend < threshold:
        reason = (f"std(o_proj)/std(q_proj) falls from {o_q[0]:.2f} in layer 1 to {o_q[-1]:.2f} in "
                  f"layer {len(o_q)}: depth-scaled init (DS-Init / OLMo-style, std shrinking with "
                  "l)")
    elif ratio < threshold:
        reason = (f"std(o_proj)/std(q_proj) = {ratio:.2f} (median over layers): the residual "
                  "output projections are scaled down (GPT-2/Megatron-style scaled init, "
                  "std/sqrt(2L))")
    else:
        reason = f"plain init: std(o_proj)/std(q_proj) = {ratio:.2f} (median), no depth trend"
    report = InitReport(o_q, d_g, depth_scaled=ratio < threshold or trend < threshold,
                        reason=reason)
    if report.depth_scaled and action != "report":
        msg = (f"{reason}. Do not combine LayerNorm Scaling with scaled initialization (arXiv "
               "2502.05795, v5 footnote 1 and Table 6: at LLaMA-250M, LNS + scaled init gives back 0.44 "
               "of LNS's 1.57-perplexity gain over Pre-LN, 20.79 vs 20.35). Fix: initialize o_proj and "
               "down_proj like every other matrix, N(0, config.initializer_range) -- e.g. build the model with "
               "curse_of_depth.layernorm_scaling.new_lns_model(config).")
        if action == "raise":
            raise ValueError(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    return report


def new_lns_model(config: PreTrainedConfig, seed: int = 0,
                  factors: list[float] | None = None) -> PreTrainedModel:
    """A fresh Hugging Face causal LM with LNS for training from scratch: Hugging Face's plain
    seeded init, LNS, then ``check_init``. Notebook 05."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    apply_layernorm_scaling(model, factors)
    check_init(model, action="raise")
    return model


__all__ = [
    "InitReport", "LNSLlamaConfig", "LNSLlamaForCausalLM", "LNSMistralConfig",
    "LNSMistralForCausalLM", "LNSQwen2Config", "LNSQwen2ForCausalLM", "apply_layernorm_scaling",
    "check_init", "default_factors", "from_pretrained", "has_layernorm_scaling",
    "layernorm_scaling_factors", "max_logit_gap", "new_lns_model", "remove_layernorm_scaling",
    "supported",
]
