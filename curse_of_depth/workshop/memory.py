"""Memory: how much a CPU training run needs, how much this machine (or container) has, and the
guard between.

A batch that does not fit gets the kernel killed by the operating system with no message (fatal on
Binder's 2 GB), so ``train`` (notebook 03) asks ``check_training_memory`` first and refuses what
does not fit, naming the largest batch that does. The estimate was fitted to the peak RSS of real
training steps (d 64-256, 2-24 blocks, vocabularies of 84 and 2,000; fp32 on CPU): it lands 5-20 %
above every measurement, never below. The doctor (notebook 00) reads the same ``available_bytes``.
"""

from __future__ import annotations

import os
from pathlib import Path

# fp32 floats kept per token: each block keeps ~11 d + 5 h activations for backward (d the width, h
# the SwiGLU width) and the measured peak is 1.6x that (temporaries of RoPE, attention and the
# backward pass); the head keeps ~4 V (logits, log-softmax, their gradients). Evaluation holds one
# block's activations at a time.
_BLOCK_FACTOR = 1.6
_HEAD_FLOATS = 4
_PARAM_BYTES = 16  # fp32 weight, gradient and AdamW's two moments
# use at most this share of what is available: the rest is the notebook, plots, the OS
_HEADROOM = 0.9


def _cgroup_bytes_left(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes left under this container's memory limit (Binder, Docker), or None when there is no
    limit.

    The host's free memory says nothing inside a container: Binder kills a kernel at its ~2 GB limit
    while the node shows tens of GB free. Usage counts without inactive file pages (reclaimable
    cache), as ``docker stats`` does, so reading a 540 MB model file once does not look like 540 MB
    used.
    """
    for limit_f, usage_f, stat_f, inactive_key in (
            ("memory.max", "memory.current", "memory.stat", "inactive_file"),
            ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
             "total_inactive_file")):
        try:
            limit = (root / limit_f).read_text().strip()
            usage = int((root / usage_f).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 2**60:  # "no limit" (cgroup v2 / v1 spelling)
            return None
        try:
            stat = dict(line.split() for line in (root / stat_f).read_text().splitlines() if line.count(" ") == 1)
            usage -= int(stat.get(inactive_key, 0))
        except (OSError, ValueError):
            pass
        return max(0, int(limit) - usage)
    return None


def available_bytes() -> int | None:
    """Memory this process can still take: MemAvailable (Linux), the free pages elsewhere, capped by
    a cgroup limit; None when the system does not say (then nothing is refused)."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    left = _cgroup_bytes_left()
    return avail if left is None else min(avail, left)


def training_memory(model_cfg, train_cfg) -> dict[str, int]:
    """Estimated bytes a CPU training run needs: ``{"model": ..., "per_sequence": ...,
    "per_eval_sequence": ..., "total": ...}`` (model = weights, gradients and AdamW state;
    per_sequence = one training sequence's activations and tokens; per_eval_sequence = one
    validation sequence's, plus its stored tokens)."""
    d, h, V, L, T = model_cfg.d_model, model_cfg.hidden, model_cfg.vocab_size, model_cfg.n_layers, train_cfg.seq_len
    block = 11 * d + 5 * h + (4 * d if model_cfg.norm == "peri" else 0)
    # + int64 inputs and targets
    per_seq = T * (4 * (L * _BLOCK_FACTOR * block + _HEAD_FLOATS * V) + 16)
    per_eval = T * (4 * (block + _HEAD_FLOATS * V) + 16 * train_cfg.eval_batches)
    model = _PARAM_BYTES * _count_params(model_cfg)
    total = model + train_cfg.batch_size * per_seq + train_cfg.eval_batch_size * per_eval
    return {"model": model, "per_sequence": int(per_seq), "per_eval_sequence": int(per_eval),
            "total": int(total)}


def _count_params(cfg) -> int:
    """Parameters of ``CausalLM(cfg)`` from the shapes alone (what ``num_params`` counts)."""
    d, h, V, L = cfg.d_model, cfg.hidden, cfg.vocab_size, cfg.n_layers
    norms = 4 if cfg.norm == "peri" else 2
    return 2 * V * d + d + L * (4 * d * d + 3 * d * h + norms * d)


def _gb(n: float) -> str:
    for unit, size in (("TB", 2**40), ("GB", 2**30)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 2**20:.1f} MB"


def check_training_memory(model_cfg, train_cfg, available: int | None = None) -> None:
    """Raise ``MemoryError`` naming the largest ``batch_size`` / ``eval_batch_size`` that fit, when
    a CPU run of these configs would need more memory than is available (``COD_MEMORY_CHECK=0``
    turns the check off)."""
    if os.environ.get("COD_MEMORY_CHECK", "").strip() == "0":
        return
    available = available_bytes() if available is None else available
    if available is None:
        return
    need = training_memory(model_cfg, train_cfg)
    budget = _HEADROOM * available
    if need["total"] <= budget:
        return
    per_seq, per_eval, model = need["per_sequence"], need["per_eval_sequence"], need["model"]
    train_part, eval_part = train_cfg.batch_size * per_seq, train_cfg.eval_batch_size * per_eval
    # the largest of each with the other at most at its default (16 / 32), and with the other as it is
    fit_train = int((budget - model - min(eval_part, 32 * per_eval)) // per_seq)
    fit_eval = int((budget - model - min(train_part, 16 * per_seq)) // per_eval)
    fixes = []
    if fit_train < 1:
        fixes.append("a shorter seq_len or a smaller model: not even batch_size=1 fits")
    elif train_cfg.batch_size > fit_train:
        fixes.append(f"batch_size <= {fit_train}")
    if train_cfg.eval_batch_size > fit_eval >= 1:
        fixes.append(f"eval_batch_size <= {fit_eval}")
    if not fixes:
        fixes.append(f"batch_size <= {max(1, int((budget - model - eval_part) // per_seq))}")
    raise MemoryError(
        f"this run needs about {_gb(need['total'])} (model and AdamW state {_gb(model)}, "
        f"batch_size={train_cfg.batch_size} x {_gb(per_seq)} per sequence, "
        f"eval_batch_size={train_cfg.eval_batch_size} x {_gb(per_eval)}) but only {_gb(available)} "
        f"is available here: the kernel would be killed. Use TrainConfig({', '.join(fixes)}) "
        "(COD_MEMORY_CHECK=0 skips this estimate)."
    )
