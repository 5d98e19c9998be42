"""The trainer: stopped by steps or wall-clock seconds, divergence as a result, Ctrl-C keeps the run.

Explained in notebook 03 (train it live); notebook 04 loads its checkpoints.

One function, ``train(model_cfg, train_cfg)``, runs AdamW with linear warmup
and cosine decay on a corpus (``curse_of_depth.data``) and returns a
``RunResult``: configs, curves, wall time, tokens/s, and the trained model.
It runs on a CPU, on one GPU (bf16 autocast, fp32 master weights), and under
``torchrun`` as DistributedDataParallel (see ``python -m curse_of_depth.train
--help``). Design choices and why:

* Every random draw has an explicit ``torch.Generator`` seeded from
  ``TrainConfig.seed``: the same seed gives the same init and the same data
  order, so two norms trained with one seed see identical batches.
* The learning-rate schedule is defined by ``max_steps`` even when
  ``max_seconds`` stops the run first, so a run cut short by the clock is a
  prefix of the full run, not a different run.
* A Post-LN blow-up is a teaching moment: a non-finite loss, or a loss above
  ``diverge_factor`` x the initial loss once warmup is over, ends the run with
  ``diverged=True`` instead of raising.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ._files import atomic_save_safetensors, atomic_write_json, config_key, data_dir, sha256_file
from ._memory import check_training_memory
from .model import CausalLM, ModelConfig, build_model

RUN_FORMAT = 1  # bump when a cached run would no longer mean the same thing (train-or-load key)
CHECKPOINT_FORMAT = "curse_of_depth/checkpoint/1"
DTYPES = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """How to train (notebook 03). Defaults: the recipe measured on a 2-core CPU (d=64, 4 heads, seq 128, batch 16, lr 3e-3).

    ``batch_size`` is per process: under ``torchrun`` with N ranks a step sees N x batch_size sequences.
    """

    max_steps: int = 480
    max_seconds: float | None = None  # wall-clock budget (evaluations included); None = no limit
    lr: float = 3e-3
    warmup_frac: float = 0.1
    min_lr_frac: float = 0.1  # cosine decays to lr * min_lr_frac at max_steps
    weight_decay: float = 0.1  # matrices and embeddings only; norm gains are never decayed
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global grad norm; 0 = no clipping
    batch_size: int = 16
    seq_len: int = 128
    eval_every: int = 50  # validation every this many steps (and at the end)
    eval_batches: int = 8
    eval_batch_size: int = 32
    eval_at_start: bool = True  # a validation point at step 0 (the init loss; callbacks see the untrained model)
    seed: int = 0  # fixes the init and the data order
    device: str = "auto"  # "auto" = cuda when available, else cpu
    dtype: str = "auto"  # "auto" = bf16 autocast on GPU, fp32 on CPU; "bf16" is GPU only
    corpus: str = "shakespeare"  # a name known to curse_of_depth.data.load_corpus
    diverge_factor: float = 2.0  # after warmup, loss > diverge_factor x the step-1 loss = diverged

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # JSON gives a list
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        need(isinstance(self.max_steps, int) and self.max_steps >= 1,
             f"max_steps must be an integer >= 1, got {self.max_steps!r}: set TrainConfig(max_steps=...) to a positive step count")
        need(self.max_seconds is None or self.max_seconds > 0,
             f"max_seconds must be > 0 or None (no time limit), got {self.max_seconds!r}")
        need(self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive finite number, got {self.lr!r}")
        need(0 <= self.warmup_frac < 1, f"warmup_frac must lie in [0, 1), got {self.warmup_frac!r}")
        need(0 <= self.min_lr_frac <= 1, f"min_lr_frac must lie in [0, 1], got {self.min_lr_frac!r}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1), got {self.betas!r}")
        need(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip!r}")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1,
             f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        need(isinstance(self.seq_len, int) and self.seq_len >= 1, f"seq_len must be an integer >= 1, got {self.seq_len!r}")
        need(self.eval_every >= 1, f"eval_every must be >= 1 step, got {self.eval_every!r}")
        need(self.eval_batches >= 1 and self.eval_batch_size >= 1,
             f"eval_batches and eval_batch_size must be >= 1, got {self.eval_batches}, {self.eval_batch_size}")
        need(self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        need(_device_ok(self.device), f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
             + (": PyTorch calls an NVIDIA GPU 'cuda'" if str(self.device).lower().startswith("gpu") else ""))
        for name in ("eval_every", "eval_batches", "eval_batch_size"):
            need(isinstance(getattr(self, name), int), f"{name} must be a whole number, got {getattr(self, name)!r}")
        need(self.diverge_factor > 1, f"diverge_factor must be > 1, got {self.diverge_factor!r}")
        need(isinstance(self.seed, int) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")

    @property
    def warmup_steps(self) -> int:
        return max(1, round(self.warmup_frac * self.max_steps)) if self.warmup_frac > 0 else 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def _device_ok(device) -> bool:
    try:
        return device == "auto" or torch.device(device).type in ("cpu", "cuda", "mps")
    except (RuntimeError, TypeError):
        return False


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, then cosine to ``lr * min_lr_frac``. Notebook 03."""
    warmup = cfg.warmup_steps
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, cfg.max_steps - warmup))
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _none_to_nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


@dataclass
class RunResult:
    """What a training run produced (notebooks 03, 04). ``model`` is the trained model (not serialized: see
    ``save_checkpoint``)."""

    model_config: ModelConfig
    train_config: TrainConfig
    train_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss of that step's batch)
    val_curve: list[tuple[int, float]] = field(default_factory=list)  # (steps done, validation loss)
    final_val: float = float("nan")
    final_val_step: int | None = None  # the step final_val was measured at (earlier than steps_done after a Ctrl-C)
    wall_s: float = 0.0  # the whole run, evaluations included
    tokens_per_s: float = 0.0  # training tokens (all ranks) per second of training steps, evaluations excluded
    first_step_s: float = 0.0  # the first step's seconds (with torch.compile: mostly compilation)
    diverged: bool = False
    interrupted: bool = False
    steps_done: int = 0
    stop_reason: str = ""  # max_steps | max_seconds | diverged | interrupted | callback
    diverged_reason: str = ""
    tokens_seen: int = 0
    n_params: int = 0
    world_size: int = 1
    device: str = "cpu"
    corpus: str = ""  # the corpus fingerprint
    model: CausalLM | None = field(default=None, repr=False, compare=False)
    from_cache: bool = field(default=False, repr=False, compare=False)

    @property
    def val_steps(self) -> list[int]:
        return [s for s, _ in self.val_curve]

    @property
    def val_loss(self) -> list[float]:
        return [v for _, v in self.val_curve]

    def to_dict(self) -> dict:
        """JSON-ready; non-finite losses become null (strict JSON has no NaN)."""
        return {
            "model_config": self.model_config.to_dict(), "train_config": self.train_config.to_dict(),
            "train_steps": [s for s, _ in self.train_curve],
            "train_loss": [_finite_or_none(v) for _, v in self.train_curve],
            "val_steps": self.val_steps, "val_loss": [_finite_or_none(v) for v in self.val_loss],
            "final_val": _finite_or_none(self.final_val), "final_val_step": self.final_val_step,
            "wall_s": self.wall_s, "tokens_per_s": self.tokens_per_s,
            "first_step_s": self.first_step_s,
            "diverged": self.diverged, "interrupted": self.interrupted, "steps_done": self.steps_done,
            "stop_reason": self.stop_reason, "diverged_reason": self.diverged_reason, "tokens_seen": self.tokens_seen,
            "n_params": self.n_params, "world_size": self.world_size, "device": self.device, "corpus": self.corpus,
        }

    @classmethod
    def from_dict(cls, d: dict) -> RunResult:
        d = dict(d)
        train = list(zip(d.pop("train_steps", []), (_none_to_nan(v) for v in d.pop("train_loss", []))))
        val = list(zip(d.pop("val_steps", []), (_none_to_nan(v) for v in d.pop("val_loss", []))))
        known = {f.name for f in fields(cls)} - {"model", "from_cache", "train_curve", "val_curve"}
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs["model_config"] = ModelConfig.from_dict(d["model_config"])
        kwargs["train_config"] = TrainConfig.from_dict(d["train_config"])
        kwargs["final_val"] = _none_to_nan(d.get("final_val"))
        return cls(train_curve=[(int(s), v) for s, v in train], val_curve=[(int(s), v) for s, v in val], **kwargs)

    def save_json(self, path: str | os.PathLike, provenance: dict | None = None) -> Path:
        """Write ``to_dict()`` (plus ``provenance`` when given) atomically."""
        data = self.to_dict()
        if provenance is not None:
            data = {"provenance": provenance, **data}
        return atomic_write_json(path, data)

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> RunResult:
        d = json.loads(Path(path).read_text())
        d.pop("provenance", None)
        return cls.from_dict(d)


# ------------------------------------------------------------------------------------------ helpers

def _resolve_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", local)
        return torch.device("cpu")
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device!r} but no CUDA GPU is visible; use device='cpu' or 'auto'")
    return dev


def _autocast(device: torch.device, cfg: TrainConfig):
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "bf16" if device.type == "cuda" else "fp32"
    if dtype == "bf16":
        if device.type != "cuda":
            raise ValueError("dtype='bf16' is GPU only here: bf16 autocast was measured 1.7x slower than fp32 on "
                             "CPU; use dtype='fp32' or 'auto'")
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # fp32 master weights, bf16 matmuls
    return contextlib.nullcontext


def _dist():
    """(rank, world_size) when torch.distributed is initialized, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and embeddings (ndim >= 2) only, never on norm gains. Notebook 03.

    With ``weight_decay=0`` this is plain Adam (the paper's recipe). On a GPU the fused kernel updates every
    parameter in one launch.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.is_cuda for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)


def data_generator(seed: int, rank: int = 0) -> torch.Generator:
    """The generator that draws training batches: distinct per seed and per rank, independent of the init's. Notebook 03."""
    return torch.Generator().manual_seed(1_000_003 * (seed + 1) + 7919 * rank)


@torch.no_grad()
def evaluate(model: CausalLM, batches, device: torch.device | str = "cpu", autocast=contextlib.nullcontext) -> float:
    """Mean loss over ``batches`` [(x, y), ...]; under torchrun each rank takes a share and the mean is all-reduced.

    Notebooks 03 and 04.
    """
    rank, world = _dist()
    device = torch.device(device)
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    try:
        for i, (x, y) in enumerate(batches):
            if i % world != rank:
                continue
            with autocast():
                loss = model(x.to(device), y.to(device)).loss
            total[0] += loss.double()
            total[1] += 1
    finally:
        model.train(was_training)
    _all_reduce(total)
    return float(total[0] / total[1])


class LivePlot:
    """A loss plot updated in place in a notebook; does nothing without a notebook front end. Notebook 03."""

    def __init__(self, title: str = "", min_interval_s: float = 2.0):
        self.handle = None
        self.fig = None
        self.min_interval_s = min_interval_s
        self.last = 0.0
        self.title = title
        if not self.available():
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        from . import plots

        self.fig, self.ax = plots.subplots()
        plt.close(self.fig)  # detached from pyplot: only the display handle shows it, no second copy at cell end
        self.handle = display(self.fig, display_id=True)

    @staticmethod
    def available() -> bool:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        ip = get_ipython()
        return ip is not None and getattr(ip, "kernel", None) is not None

    def update(self, result: RunResult, force: bool = False) -> None:
        if self.handle is None or (not force and time.perf_counter() - self.last < self.min_interval_s):
            return
        self.last = time.perf_counter()
        from . import plots

        ax = self.ax
        ax.clear()
        color = plots.NORM_COLORS.get(result.model_config.norm, "C0")
        if result.train_curve:
            s, v = zip(*result.train_curve)
            ax.plot(s, v, color=color, alpha=0.35, lw=1, label="train (per batch)")
        if result.val_curve:
            s, v = zip(*result.val_curve)
            ax.plot(s, v, "o-", color=color, label="validation")
        ax.set_xlim(0, result.train_config.max_steps)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats / char)")
        ax.set_title(self.title)
        ax.legend(loc="upper right")
        self.handle.update(self.fig)

    def close(self, result: RunResult) -> None:
        if self.handle is not None:
            self.update(result, force=True)


# ---------------------------------------------------------------------------------------- training

def _check_configs(model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    model_cfg.validate()
    train_cfg.validate()
    if train_cfg.seq_len > model_cfg.seq_len:
        raise ValueError(f"TrainConfig.seq_len={train_cfg.seq_len} exceeds the model's context "
                         f"ModelConfig.seq_len={model_cfg.seq_len}; lower TrainConfig.seq_len or raise ModelConfig.seq_len")


def _check_inputs(model_cfg: ModelConfig, train_cfg: TrainConfig, corpus) -> None:
    _check_configs(model_cfg, train_cfg)
    if model_cfg.vocab_size < corpus.vocab_size:
        raise ValueError(f"ModelConfig.vocab_size={model_cfg.vocab_size} is smaller than the corpus vocabulary "
                         f"({corpus.vocab_size}); use ModelConfig(vocab_size=corpus.vocab_size)")
    for split in ("train", "val"):
        n = corpus.split(split).numel()
        if train_cfg.seq_len + 1 > n:
            raise ValueError(f"the {split} split has {n} tokens, too few for seq_len={train_cfg.seq_len}")


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    corpus=None,
    progress: bool = True,
    live_plot: bool = False,
    callback=None,
    *,
    model: CausalLM | None = None,
    state_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    compile: bool | None = None,
) -> RunResult:
    """Train a fresh model (or ``model``) and return the ``RunResult`` (with ``.model``). Notebook 03.

    Stops at ``max_steps`` or ``max_seconds``, whichever comes first. ``callback(step, model, result)`` runs at
    every validation point (step 0 included when ``eval_at_start``); a truthy return value stops the run.
    ``state_dir`` + ``checkpoint_every`` write a resumable training state every N steps (rank 0 only);
    ``resume=True`` continues from the one in ``state_dir``. Ctrl-C returns the partial run (``interrupted``).
    ``compile`` runs the training steps through ``torch.compile`` (default: on a CUDA GPU only; the same
    weights, data and optimizer, fused kernels); evaluation and callbacks use the plain model.
    """
    from ._progress import progress_bar as tqdm
    from .data import load_corpus

    corpus = corpus if corpus is not None else load_corpus(train_cfg.corpus)
    _check_inputs(model_cfg, train_cfg, corpus)
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0 = never), got {checkpoint_every}")
    if (checkpoint_every or resume) and state_dir is None:
        raise ValueError("checkpoint_every / resume need state_dir=<folder for the training state>")
    rank, world = _dist()
    device = _resolve_device(train_cfg)
    autocast = _autocast(device, train_cfg)
    if device.type == "cpu":  # a batch that does not fit kills the kernel silently; CUDA raises its own OOM error
        check_training_memory(model_cfg, train_cfg)

    if model is None:
        model = build_model(model_cfg, seed=train_cfg.seed)
    elif model.cfg != model_cfg:
        raise ValueError("model.cfg differs from model_cfg; pass model_cfg=model.cfg")
    model.to(device).train()
    optimizer = make_optimizer(model, train_cfg)
    gen = data_generator(train_cfg.seed, rank)
    result = RunResult(model_cfg, train_cfg, n_params=model.num_params(), world_size=world, device=str(device),
                       corpus=corpus.fingerprint)
    if resume:
        _load_state(Path(state_dir), model, optimizer, gen, result, rank, world)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if device.type == "cuda" if compile is None else compile:
        net = torch.compile(net)
    val_batches = corpus.fixed_batches("val", train_cfg.eval_batches, train_cfg.eval_batch_size, train_cfg.seq_len,
                                       seed=train_cfg.seed)
    tokens_per_step = train_cfg.batch_size * train_cfg.seq_len * world
    params = [p for p in model.parameters() if p.requires_grad]
    plot = LivePlot(f"{model_cfg.norm}, {model_cfg.n_layers} blocks, d={model_cfg.d_model}") if (
        live_plot and rank == 0) else None
    bar = tqdm(total=train_cfg.max_steps, initial=result.steps_done, disable=not progress or rank != 0,
               desc=f"{model_cfg.norm} L{model_cfg.n_layers} d{model_cfg.d_model}", leave=True)
    prior_wall, prior_train_s = result.wall_s, (result.tokens_seen / result.tokens_per_s if result.tokens_per_s else 0.0)
    t0 = time.perf_counter()
    train_s = 0.0
    # "exploding" is judged against the loss at step 1 (the init's loss, about ln(vocab)), after warmup only
    first_loss = result.train_curve[0][1] if result.train_curve else None
    step = result.steps_done
    stop = ""

    def validate_now() -> bool:
        """A validation point; returns True when the callback asks to stop."""
        val = evaluate(model, val_batches, device, autocast)
        result.val_curve.append((step, val))
        bar.set_postfix(loss=f"{result.train_curve[-1][1]:.3f}" if result.train_curve else "-", val=f"{val:.3f}")
        if plot is not None:
            plot.update(result)
        if callback is None:
            return False
        model.eval()  # callbacks measure the model as it stands, e.g. residual variance per block
        try:
            return bool(callback(step, model, result))
        finally:
            model.train()

    try:
        if step == 0 and train_cfg.eval_at_start and validate_now():
            stop = "callback"
        while not stop and step < train_cfg.max_steps:
            elapsed = prior_wall + time.perf_counter() - t0
            want_stop = torch.tensor([float(train_cfg.max_seconds is not None and elapsed >= train_cfg.max_seconds)])
            if float(_all_reduce(want_stop.to(device), "max")) > 0:  # every rank stops at the same step
                stop = "max_seconds"
                break
            t_step = time.perf_counter()
            lr = lr_at(step, train_cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = corpus.get_batch("train", train_cfg.batch_size, train_cfg.seq_len, gen)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast():
                loss = net(x, y).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train_cfg.grad_clip > 0:
                gnorm = torch.nn.utils.clip_grad_norm_(params, train_cfg.grad_clip)
            else:
                gnorm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
            stats = _all_reduce(torch.stack([loss.detach().float() / world, gnorm.detach().float()]).to(device))
            loss_v, gnorm_v = stats.tolist()
            if not (math.isfinite(loss_v) and math.isfinite(gnorm_v)):
                result.train_curve.append((step + 1, loss_v))
                result.diverged, result.diverged_reason = True, f"non-finite loss or gradient at step {step + 1}"
                stop = "diverged"
                break
            optimizer.step()
            step += 1
            train_s += time.perf_counter() - t_step
            if step == 1:
                result.first_step_s = round(time.perf_counter() - t_step, 3)
            result.train_curve.append((step, loss_v))
            result.steps_done, result.tokens_seen = step, result.tokens_seen + tokens_per_step
            bar.update(1)
            if first_loss is None:
                first_loss = loss_v
            if step > train_cfg.warmup_steps and loss_v > train_cfg.diverge_factor * first_loss:
                result.diverged = True
                result.diverged_reason = (f"loss {loss_v:.3g} at step {step} exceeds {train_cfg.diverge_factor} x "
                                          f"the initial loss {first_loss:.3g}")
                stop = "diverged"
                break
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss_v:.3f}", val=f"{result.val_curve[-1][1]:.3f}" if result.val_curve else "-")
            if step % train_cfg.eval_every == 0 and step < train_cfg.max_steps and validate_now():
                stop = "callback"
            if checkpoint_every and step % checkpoint_every == 0:
                _finish_times(result, prior_wall, t0, prior_train_s, train_s)
                _save_state(Path(state_dir), model, optimizer, gen, result, rank, world)
        if not stop:
            stop = "max_steps"
        if stop != "callback" and not (result.val_curve and result.val_curve[-1][0] == step):
            validate_now()  # the final validation point
    except KeyboardInterrupt:
        result.interrupted, stop = True, "interrupted"
    finally:
        bar.close()
    result.stop_reason = stop or "interrupted"
    result.final_val_step, result.final_val = result.val_curve[-1] if result.val_curve else (None, float("nan"))
    if result.interrupted and result.final_val_step != result.steps_done:
        last = "no validation loss yet" if result.final_val_step is None else (
            f"the last validation loss {result.final_val:.3f} is from step {result.final_val_step} (final_val_step)")
        print(f"interrupted: the model holds step {result.steps_done}'s weights; {last}", file=sys.stderr)
    _finish_times(result, prior_wall, t0, prior_train_s, train_s)
    if plot is not None:
        plot.close(result)
    result.model = model
    return result


def _finish_times(result: RunResult, prior_wall: float, t0: float, prior_train_s: float, train_s: float) -> None:
    result.wall_s = round(prior_wall + time.perf_counter() - t0, 3)
    total_train_s = prior_train_s + train_s
    result.tokens_per_s = round(result.tokens_seen / total_train_s, 1) if total_train_s > 0 else 0.0


# --------------------------------------------------------------------------- resumable training state

def _save_state(folder: Path, model: CausalLM, optimizer, gen: torch.Generator, result: RunResult,
                rank: int, world: int) -> None:
    """Model + optimizer + generator states (safetensors) and step + curves (JSON); rank 0 writes all ranks'."""
    gen_state = gen.get_state()
    gen_states = [gen_state]
    if world > 1:
        import torch.distributed as dist

        gen_states = [torch.empty_like(gen_state) for _ in range(world)]
        dist.all_gather_object(gen_states, gen_state)
    if rank != 0:
        return
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"optim.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    for r, s in enumerate(gen_states):
        tensors[f"generator.{r}"] = s
    path = atomic_save_safetensors(tensors, folder / "state.safetensors")
    meta = {"format": CHECKPOINT_FORMAT, "world_size": world, "state_sha256": sha256_file(path),
            "param_groups": opt["param_groups"], "result": result.to_dict()}
    atomic_write_json(folder / "state.json", meta)  # written last: the commit mark


def _load_state(folder: Path, model: CausalLM, optimizer, gen: torch.Generator, result: RunResult,
                rank: int, world: int) -> None:
    from safetensors.torch import load_file

    meta_path, path = folder / "state.json", folder / "state.safetensors"
    if not meta_path.exists() or not path.exists():
        raise FileNotFoundError(f"no training state in {folder} to resume from; run without --resume first")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT or sha256_file(path) != meta.get("state_sha256"):
        raise ValueError(f"training state in {folder} is damaged or from another version; start without --resume")
    if meta["world_size"] != world:
        raise ValueError(f"state was written by {meta['world_size']} processes, now {world}: resume with the same "
                         "--nproc_per_node (each rank continues its own data stream)")
    saved = RunResult.from_dict(meta["result"])
    if saved.model_config != result.model_config or saved.train_config != result.train_config:
        raise ValueError(f"training state in {folder} belongs to other configs; use a fresh --out folder")
    tensors = load_file(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    gen.set_state(tensors[f"generator.{rank}"])
    for f in ("train_curve", "val_curve", "steps_done", "tokens_seen", "wall_s", "tokens_per_s"):
        setattr(result, f, getattr(saved, f))


# ----------------------------------------------------------------------------------------- checkpoints

def save_checkpoint(model: CausalLM, path: str | os.PathLike, result: RunResult | None = None) -> Path:
    """The model's weights as safetensors (atomic), its config and the run's result in the metadata. Notebook 04."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    meta = {"format": CHECKPOINT_FORMAT, "model_config": json.dumps(model.cfg.to_dict())}
    if result is not None:
        meta["result"] = json.dumps(result.to_dict())
    return atomic_save_safetensors(model.state_dict(), path, metadata=meta)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[CausalLM, RunResult | None]:
    """(model, result) from ``save_checkpoint``'s file; safe to load (no pickle). Notebook 04."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a curse_of_depth checkpoint (format {meta.get('format')!r}); "
                         "write it with curse_of_depth.train.save_checkpoint")
    model = CausalLM(ModelConfig.from_dict(json.loads(meta["model_config"])))
    model.load_state_dict(load_file(str(path)), strict=True)
    result = RunResult.from_dict(json.loads(meta["result"])) if "result" in meta else None
    if result is not None:
        result.model = model
    return model.to(device).eval(), result


def run_key(model_cfg: ModelConfig, train_cfg: TrainConfig, corpus_fingerprint: str) -> str:
    """The train-or-load cache key: both configs, the corpus and the code format. Notebook 03."""
    return config_key({"model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "corpus": corpus_fingerprint,
                       "format": RUN_FORMAT})


def runs_dir() -> Path:
    """Where ``train_or_load`` keeps finished runs: ``<data_dir>/runs``. Notebook 03."""
    return data_dir() / "runs"


def train_or_load(model_cfg: ModelConfig, train_cfg: TrainConfig, cache: bool = True, corpus=None,
                  progress: bool = True, live_plot: bool = False, callback=None,
                  folder: str | os.PathLike | None = None) -> RunResult:
    """A cached run when one with the same configs (and corpus, and code format) is stored and intact, else train.

    Interrupted runs are returned but not cached. ``result.from_cache`` says which happened. Notebooks 03 and 04.
    """
    from .data import load_corpus

    corpus = corpus if corpus is not None else load_corpus(train_cfg.corpus)
    _check_inputs(model_cfg, train_cfg, corpus)
    run_folder = Path(folder) if folder else runs_dir() / run_key(model_cfg, train_cfg, corpus.fingerprint)
    ckpt, meta_path = run_folder / "model.safetensors", run_folder / "run.json"
    if cache and meta_path.exists() and ckpt.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("checkpoint_sha256") == sha256_file(ckpt):
                model, _ = load_checkpoint(ckpt)
                result = RunResult.from_dict(meta["result"])
                if result.model_config == model_cfg and result.train_config == train_cfg:
                    result.model, result.from_cache = model.train(), True
                    return result
        except (ValueError, KeyError, OSError, json.JSONDecodeError, RuntimeError) as exc:
            print(f"cached run in {run_folder} is unreadable ({exc}); training again", file=sys.stderr)
    result = train(model_cfg, train_cfg, corpus=corpus, progress=progress, live_plot=live_plot, callback=callback)
    if cache and not result.interrupted:
        model = result.model.cpu()
        save_checkpoint(model, ckpt, result)
        atomic_write_json(meta_path, {"checkpoint_sha256": sha256_file(ckpt), "result": result.to_dict()})
    return result


__all__ = ["TrainConfig", "RunResult", "train", "train_or_load", "save_checkpoint", "load_checkpoint", "lr_at",
           "evaluate", "make_optimizer", "data_generator", "LivePlot"]


# ------------------------------------------------------------------------------------------------ CLI

_CLI_DOC = """Train curse_of_depth models from the command line: CPU, one GPU, or several GPUs under torchrun.

examples:
  python -m curse_of_depth.train --norm lns --n-layers 12 --max-steps 480 --out runs/lns12
  python -m curse_of_depth.train --config sweep.json --seeds 0,1,2 --out runs/sweep --resume
  torchrun --standalone --nproc_per_node=4 -m curse_of_depth.train --d-model 256 --n-layers 48 --out runs/big

--config reads JSON {"model": {...ModelConfig...}, "train": {...TrainConfig...}} (or one flat object);
flags given on the command line override it. Each seed writes DIR/seed<S>/result.json (with provenance),
DIR/seed<S>/model.safetensors and a resumable training state in DIR/seed<S>/state/. Under torchrun the
batch size is per process, ranks draw different batches, losses are all-reduced and only rank 0 writes.
"""


def _add_dataclass_flags(parser, cls, group_title: str, prefix_clash: tuple[str, ...] = ()) -> list[str]:
    """One flag per dataclass field; fields in ``prefix_clash`` get a ``--train-`` prefix (both configs have them)."""
    import argparse
    import typing

    group = parser.add_argument_group(group_title)
    hints = typing.get_type_hints(cls)
    names = []
    for f in fields(cls):
        hint = hints[f.name]
        dest = ("train_" if f.name in prefix_clash else "") + f.name
        flag = "--" + dest.replace("_", "-")
        default = f.default
        if hint is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None,
                               help=f"(default {default})")
        elif f.name == "betas":
            group.add_argument(flag, dest=dest, default=None, type=lambda s: tuple(float(v) for v in s.split(",")),
                               help="beta1,beta2 (default 0.9,0.95)")
        else:
            base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
            group.add_argument(flag, dest=dest, default=None, type=base, help=f"(default {default})")
        names.append(dest)
    return names


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds takes comma-separated integers like 0,1,2, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds needs at least one integer >= 0, got {text!r}")
    return seeds


def _configs_from_args(args, model_names: list[str], train_names: list[str]) -> tuple[dict, dict]:
    model_kw: dict = {}
    train_kw: dict = {}
    if args.config:
        cfg = json.loads(Path(args.config).read_text())
        if "model" in cfg or "train" in cfg:
            model_kw, train_kw = dict(cfg.get("model", {})), dict(cfg.get("train", {}))
        else:
            model_kw = {k: v for k, v in cfg.items() if k in model_names}
            train_kw = {k: v for k, v in cfg.items() if k in train_names}
            unknown = set(cfg) - set(model_names) - set(train_names)
            if unknown:
                raise ValueError(f"{args.config}: unknown fields {sorted(unknown)}")
    for name in model_names:
        if getattr(args, name) is not None:
            model_kw[name] = getattr(args, name)
    for dest in train_names:
        if getattr(args, dest) is not None:
            train_kw[dest.removeprefix("train_") if dest == "train_seq_len" else dest] = getattr(args, dest)
    return model_kw, train_kw


def _init_distributed() -> tuple[int, int]:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPUs."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return _dist()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
    else:
        if not os.environ.get("COD_THREADS"):  # N processes on one CPU: share the cores, never oversubscribe
            from ._threads import physical_cores

            torch.set_num_threads(max(1, physical_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
        dist.init_process_group("gloo")
    return _dist()


def main(argv: list[str] | None = None) -> int:
    """``python -m curse_of_depth.train``: see ``--help``. Notebook 03 points researchers here."""
    import argparse

    from .workshop import results  # provenance of the written result.json (lazy: the core never needs it)

    parser = argparse.ArgumentParser(prog="python -m curse_of_depth.train", description=_CLI_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file with model and train fields (flags override it)")
    parser.add_argument("--out", help="folder for results, checkpoints and training state (rank 0 writes)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, one run each (default: --seed)")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="write a resumable state every N steps (default: eval_every, when --out is given)")
    parser.add_argument("--resume", action="store_true", help="continue each seed from its state in --out; "
                        "seeds whose result.json is complete are skipped")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the training step (default: on with a CUDA GPU, off on a CPU)")
    model_names = _add_dataclass_flags(parser, ModelConfig, "model (ModelConfig)")
    train_names = _add_dataclass_flags(parser, TrainConfig, "training (TrainConfig; --train-seq-len defaults to "
                                       "--seq-len)", prefix_clash=("seq_len",))
    args = parser.parse_args(argv)
    try:
        model_kw, train_kw = _configs_from_args(args, model_names, train_names)
        seeds = _parse_seeds(args.seeds) if args.seeds else [train_kw.get("seed", 0)]
        model_cfg = ModelConfig(**model_kw)
        train_kw.setdefault("seq_len", model_cfg.seq_len)  # train on the model's full context unless told otherwise
        train_cfg = TrainConfig(**train_kw)
        _check_configs(model_cfg, train_cfg)
        if args.resume and not args.out:
            raise ValueError("--resume needs --out DIR (where the training state was written)")
        every = args.checkpoint_every if args.checkpoint_every is not None else (train_cfg.eval_every if args.out else 0)
        if every and not args.out:
            raise ValueError("--checkpoint-every needs --out DIR")
    except (ValueError, TypeError, OSError, json.JSONDecodeError) as exc:
        parser.error(str(exc))
    rank, world = _init_distributed()
    summaries = []
    try:
        for seed in seeds:
            cfg = TrainConfig(**{**train_cfg.to_dict(), "seed": seed})
            run_dir = Path(args.out) / f"seed{seed}" if args.out else None
            if args.resume and run_dir is not None and (run_dir / "result.json").exists():
                done = RunResult.load_json(run_dir / "result.json")
                if done.stop_reason in ("max_steps", "diverged") and done.model_config == model_cfg \
                        and done.train_config == cfg:
                    if rank == 0:
                        print(f"seed {seed}: already complete in {run_dir}, skipped")
                    continue
            resume = bool(args.resume and run_dir is not None and (run_dir / "state" / "state.json").exists())
            result = train(model_cfg, cfg, progress=not args.no_progress, state_dir=run_dir / "state" if run_dir else None,
                           checkpoint_every=every, resume=resume, compile=args.compile)
            summary = {"seed": seed, "final_val": _finite_or_none(result.final_val), "steps_done": result.steps_done,
                       "stop_reason": result.stop_reason, "diverged": result.diverged, "wall_s": result.wall_s,
                       "tokens_per_s": result.tokens_per_s, "first_step_s": result.first_step_s,
                       "tokens_seen": result.tokens_seen, "world_size": world}
            summaries.append(summary)
            if rank == 0:
                if run_dir is not None:
                    save_checkpoint(result.model, run_dir / "model.safetensors", result)
                    prov = results.provenance(seeds=[seed], wall_s=result.wall_s, world_size=world,
                                              device=result.device, resumed=resume)
                    result.save_json(run_dir / "result.json", provenance=prov)
                print(json.dumps(summary), flush=True)
            if result.interrupted:
                break
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
