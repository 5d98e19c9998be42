"""The trainer: AdamW, warmup and cosine decay, stopped by steps or wall-clock seconds. Notebook 03.

``train(model_cfg, train_cfg)`` returns a ``RunResult`` (configs, curves, times, the trained model);
notebook 04 loads its checkpoints. It runs on a CPU, on one GPU (bf16 autocast, fp32 master weights,
compiled) and under ``torchrun`` as DistributedDataParallel (``python -m curse_of_depth.train
--help``). Choices:

* every random draw has an explicit ``torch.Generator`` seeded from ``TrainConfig.seed``: two norms
  trained with one seed start from the same draw and see identical batches;
* the schedule is defined by ``max_steps`` even when ``max_seconds`` stops the run first, so a run
  cut short by the clock is a prefix of the full run;
* a non-finite loss, or one above ``diverge_factor`` x the first step's after warmup, ends the run
  with ``diverged=True`` instead of raising: a Post-LN blow-up is a result to look at. Ctrl-C keeps
  the run.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist

from . import _files
from .data import load_corpus
from .model import CausalLM, ModelConfig, build_model

CHECKPOINT_FORMAT = "curse_of_depth/checkpoint/1"
STATE_FORMAT = "curse_of_depth/training-state/2"
DTYPES = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """How to train (notebook 03); the defaults are the kit's CPU recipe. ``batch_size`` is per
    process: under ``torchrun`` with N ranks a step sees N x batch_size sequences."""

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
    eval_at_start: bool = True  # a validation point at step 0 (callbacks see the untrained model)
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

        for name in ("max_steps", "batch_size", "seq_len", "eval_every", "eval_batches",
                     "eval_batch_size"):
            value = getattr(self, name)
            need(isinstance(value, int) and value >= 1, f"{name} must be a whole number >= 1, got "
                 f"{value!r}: set TrainConfig({name}=...) to one")
        need(self.max_seconds is None or self.max_seconds > 0,
             f"max_seconds must be > 0 or None (no time limit), got {self.max_seconds!r}")
        need(self.lr > 0 and math.isfinite(self.lr),
             f"lr must be a positive finite number, got {self.lr!r}")
        need(0 <= self.warmup_frac < 1, f"warmup_frac must lie in [0, 1), got {self.warmup_frac!r}")
        need(0 <= self.min_lr_frac <= 1,
             f"min_lr_frac must lie in [0, 1], got {self.min_lr_frac!r}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1), got {self.betas!r}")
        need(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip!r}")
        need(self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        gpu = str(self.device).lower().startswith("gpu") * ": PyTorch calls an NVIDIA GPU 'cuda'"
        need(_device_ok(self.device),
             f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}{gpu}")
        need(self.diverge_factor > 1, f"diverge_factor must be > 1, got {self.diverge_factor!r}")
        need(isinstance(self.seed, int) and self.seed >= 0,
             f"seed must be an integer >= 0, got {self.seed!r}")

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
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}"
                             f"; known: {sorted(known)}")
        return cls(**d)


def _device_ok(device) -> bool:
    try:
        return device == "auto" or torch.device(device).type in ("cpu", "cuda", "mps")
    except (RuntimeError, TypeError):
        return False


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine down to
    ``lr * min_lr_frac`` at ``max_steps``. Notebook 03."""
    warmup = cfg.warmup_steps
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, cfg.max_steps - warmup))
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * cosine)


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _none_to_nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


@dataclass
class RunResult:
    """What a training run produced (notebooks 03, 04); ``model`` is the trained model (not in the
    JSON: ``save_checkpoint`` writes it)."""

    model_config: ModelConfig
    train_config: TrainConfig
    train_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, that batch's loss)
    val_curve: list[tuple[int, float]] = field(default_factory=list)  # (steps done, val loss)
    final_val: float = float("nan")
    final_val_step: int | None = None  # the step of final_val (before steps_done after a Ctrl-C)
    wall_s: float = 0.0  # the whole run, evaluations included
    tokens_per_s: float = 0.0  # training tokens (all ranks) per second of training steps
    first_step_s: float = 0.0  # the first step's seconds (with torch.compile: mostly compiling)
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
        """JSON-ready: curves as steps and losses, non-finite losses as null (JSON has no NaN)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.compare}
        d.update(model_config=self.model_config.to_dict(), train_config=self.train_config.to_dict(),
                 final_val=_finite_or_none(self.final_val))
        for curve in ("train", "val"):
            points = d.pop(f"{curve}_curve")
            d[f"{curve}_steps"] = [s for s, _ in points]
            d[f"{curve}_loss"] = [_finite_or_none(v) for _, v in points]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunResult:
        kw = {f.name: d[f.name] for f in fields(cls) if f.compare and f.name in d}
        kw.update(model_config=ModelConfig.from_dict(d["model_config"]),
                  train_config=TrainConfig.from_dict(d["train_config"]))
        kw["final_val"] = _none_to_nan(d.get("final_val"))
        for curve in ("train", "val"):
            points = zip(d.get(f"{curve}_steps", []), d.get(f"{curve}_loss", []))
            kw[f"{curve}_curve"] = [(int(s), _none_to_nan(v)) for s, v in points]
        return cls(**kw)


# ------------------------------------------------------------------------------------------ helpers


def _resolve_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device!r} but no CUDA GPU is visible; use device='cpu' or "
                         "'auto'")
    return dev


def _autocast(device: torch.device, cfg: TrainConfig) -> Callable:
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    if dtype == "bf16":
        if device.type != "cuda":
            raise ValueError("dtype='bf16' is GPU only here (bf16 autocast is slower than fp32 on "
                             "a CPU); use dtype='fp32' or 'auto'")
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # fp32 weights, bf16 matmuls
    return contextlib.nullcontext


def _dist() -> tuple[int, int]:
    """(rank, world_size) when torch.distributed is initialized, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW, decaying matrices and embeddings (ndim >= 2) only, never norm gains; plain Adam with
    ``weight_decay=0`` (the paper's recipe); fused on a GPU. Notebook 03."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas,
                             fused=all(p.is_cuda for p in decay + no_decay))


def data_generator(seed: int, rank: int = 0) -> torch.Generator:
    """The generator of training batches: one per seed and rank, not the init's. Notebook 03."""
    return torch.Generator().manual_seed(1_000_003 * (seed + 1) + 7919 * rank)


@torch.no_grad()
def evaluate(model: CausalLM, batches, device: torch.device | str = "cpu",
             autocast=contextlib.nullcontext) -> float:
    """Mean loss over a list of ``batches`` [(x, y), ...], split among the ranks. Notebook 03."""
    rank, world = _dist()
    device = torch.device(device)
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    try:
        for x, y in batches[rank::world]:
            with autocast():
                total[0] += model(x.to(device), y.to(device)).loss.double()
            total[1] += 1
    finally:
        model.train(was_training)
    _all_reduce(total)
    return float(total[0] / total[1])


def _check_inputs(model_cfg: ModelConfig, train_cfg: TrainConfig, corpus=None) -> None:
    model_cfg.validate()
    train_cfg.validate()
    if train_cfg.seq_len > model_cfg.seq_len:
        raise ValueError(f"TrainConfig.seq_len={train_cfg.seq_len} exceeds the model's context "
                         f"ModelConfig.seq_len={model_cfg.seq_len}; lower TrainConfig.seq_len or "
                         "raise ModelConfig.seq_len")
    if corpus is None:
        return
    if model_cfg.vocab_size < corpus.vocab_size:
        raise ValueError(f"ModelConfig.vocab_size={model_cfg.vocab_size} is smaller than the "
                         f"corpus vocabulary ({corpus.vocab_size}); use "
                         "ModelConfig(vocab_size=corpus.vocab_size)")
    for split in ("train", "val"):
        n = corpus.split(split).numel()
        if train_cfg.seq_len + 1 > n:
            raise ValueError(f"the {split} split has {n} tokens, too few for "
                             f"seq_len={train_cfg.seq_len}")


# ---------------------------------------------------------------------------------------- training


@dataclass
class _Run:
    """What one training run carries from step to step."""

    model: CausalLM
    net: torch.nn.Module  # the model as trained: wrapped in DistributedDataParallel and/or compiled
    optimizer: torch.optim.Optimizer
    gen: torch.Generator
    corpus: object
    cfg: TrainConfig
    device: torch.device
    autocast: Callable
    result: RunResult
    val_batches: list
    rank: int = 0
    world: int = 1
    bar: object = None
    t0: float = 0.0  # perf_counter when this process started training
    prior_wall_s: float = 0.0  # before a resume
    prior_train_s: float = 0.0
    train_s: float = 0.0  # seconds inside training steps (evaluations excluded)

    @property
    def step(self) -> int:
        return self.result.steps_done


def train(model_cfg: ModelConfig, train_cfg: TrainConfig, corpus=None, progress: bool = True,
          callback=None, *, model: CausalLM | None = None,
          state_dir: str | os.PathLike | None = None, checkpoint_every: int = 0,
          resume: bool = False, compile: bool | None = None) -> RunResult:
    """Train a fresh model (or ``model``); return the ``RunResult``, with ``.model``. Notebook 03.

    ``callback(step, model, result)`` runs at every validation point on the model in eval mode; a
    truthy return stops the run. ``state_dir`` + ``checkpoint_every`` write a resumable state every
    N steps, ``resume=True`` continues from it. ``compile`` (default: on a CUDA GPU only) runs the
    steps through ``torch.compile``; evaluation and callbacks use the plain model.
    """
    run = _start(model_cfg, train_cfg, corpus, model, state_dir, checkpoint_every, resume, compile)
    from .workshop.progress import progress_bar

    desc = f"{model_cfg.norm} L{model_cfg.n_layers} d{model_cfg.d_model}"
    run.bar = progress_bar(total=train_cfg.max_steps, initial=run.step, desc=desc,
                   disable=not progress or run.rank != 0)
    stop = ""
    try:
        if run.step == 0 and train_cfg.eval_at_start:
            stop = _validate(run, callback)
        while not stop:
            stop = _budget_spent(run)  # max_steps | max_seconds
            if stop:
                break
            stop = _train_step(run)  # diverged
            if stop:
                break
            if run.step % train_cfg.eval_every == 0 and run.step < train_cfg.max_steps:
                stop = _validate(run, callback)  # callback
            if checkpoint_every and run.step % checkpoint_every == 0:
                _save_state(run, Path(state_dir))
        if stop != "callback" and run.result.val_steps[-1:] != [run.step]:
            _validate(run, callback)  # the final validation point
    except KeyboardInterrupt:
        stop = "interrupted"
    finally:
        run.bar.close()
    return _finish(run, stop)


def _start(model_cfg, cfg, corpus, model, state_dir, checkpoint_every, resume, compile) -> _Run:
    corpus = corpus if corpus is not None else load_corpus(cfg.corpus)
    _check_inputs(model_cfg, cfg, corpus)
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0 = never), got {checkpoint_every}")
    if (checkpoint_every or resume) and state_dir is None:
        raise ValueError("checkpoint_every and resume need state_dir=<a folder for the state>")
    if model is not None and model.cfg != model_cfg:
        raise ValueError("model.cfg differs from model_cfg; pass model_cfg=model.cfg")
    rank, world = _dist()
    device = _resolve_device(cfg)
    if device.type == "cpu":  # a batch that does not fit kills the kernel silently; CUDA raises
        from .workshop.memory import check_training_memory

        check_training_memory(model_cfg, cfg)
    model = (build_model(model_cfg, seed=cfg.seed) if model is None else model).to(device).train()
    result = RunResult(model_cfg, cfg, n_params=model.num_params(), world_size=world,
                       device=str(device), corpus=corpus.fingerprint)
    val = corpus.fixed_batches("val", cfg.eval_batches, cfg.eval_batch_size, cfg.seq_len, cfg.seed)
    run = _Run(model, model, make_optimizer(model, cfg), data_generator(cfg.seed, rank), corpus,
               cfg, device, _autocast(device, cfg), result, val, rank, world)
    if resume:
        _resume(run, Path(state_dir))
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        run.net = DistributedDataParallel(model, device_ids=ids)
    if device.type == "cuda" if compile is None else compile:
        run.net = torch.compile(run.net)
    run.t0 = time.perf_counter()
    return run


def _budget_spent(run: _Run) -> str:
    """"max_steps" or "max_seconds" when no further step may start (all ranks stop at one step)."""
    if run.step >= run.cfg.max_steps:
        return "max_steps"
    late = run.cfg.max_seconds is not None and _wall_s(run) >= run.cfg.max_seconds
    return "max_seconds" if _all_reduce(torch.tensor([float(late)], device=run.device),
                                        "max").item() else ""


def _train_step(run: _Run) -> str:
    """One optimizer step on one batch; "diverged" (the reason recorded) when the loss blows up."""
    cfg, result, t = run.cfg, run.result, time.perf_counter()
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(run.step, cfg)
    x, y = run.corpus.get_batch("train", cfg.batch_size, cfg.seq_len, run.gen)
    with run.autocast():
        loss = run.net(x.to(run.device, non_blocking=True),
                       y.to(run.device, non_blocking=True)).loss
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in run.model.parameters() if p.grad is not None]
    if cfg.grad_clip > 0:
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    else:
        gnorm = torch.nn.utils.get_total_norm([p.grad for p in params])
    loss_v, gnorm_v = _all_reduce(torch.stack([loss.detach().float() / run.world,
                                               gnorm.detach().float()])).tolist()
    step = run.step + 1
    result.train_curve.append((step, loss_v))
    if not (math.isfinite(loss_v) and math.isfinite(gnorm_v)):
        result.diverged_reason = f"non-finite loss or gradient at step {step}"
        return "diverged"
    run.optimizer.step()
    run.train_s += time.perf_counter() - t
    result.first_step_s = result.first_step_s or round(time.perf_counter() - t, 3)
    result.steps_done = step
    result.tokens_seen += cfg.batch_size * cfg.seq_len * run.world
    run.bar.update(1)
    first = result.train_curve[0][1]
    if step > cfg.warmup_steps and loss_v > cfg.diverge_factor * first:
        result.diverged_reason = (f"loss {loss_v:.3g} at step {step} exceeds {cfg.diverge_factor} "
                                  f"x the initial loss {first:.3g}")
        return "diverged"
    if step % 10 == 0:
        run.bar.set_postfix(loss=f"{loss_v:.3f}",
                            val=f"{result.val_loss[-1]:.3f}" if result.val_curve else "-")
    return ""


def _validate(run: _Run, callback) -> str:
    """A validation point; "callback" when the callback asks to stop."""
    val = evaluate(run.model, run.val_batches, run.device, run.autocast)
    run.result.val_curve.append((run.step, val))
    loss = f"{run.result.train_curve[-1][1]:.3f}" if run.result.train_curve else "-"
    run.bar.set_postfix(loss=loss, val=f"{val:.3f}")
    if callback is None:
        return ""
    run.model.eval()  # callbacks measure the model as it stands, e.g. residual variance per block
    try:
        return "callback" if callback(run.step, run.model, run.result) else ""
    finally:
        run.model.train()


def _wall_s(run: _Run) -> float:
    return run.prior_wall_s + time.perf_counter() - run.t0


def _record_times(run: _Run) -> None:
    r, train_s = run.result, run.prior_train_s + run.train_s
    r.wall_s = round(_wall_s(run), 3)
    r.tokens_per_s = round(r.tokens_seen / train_s, 1) if train_s > 0 else 0.0


def _finish(run: _Run, stop: str) -> RunResult:
    r = run.result
    r.stop_reason, r.diverged, r.interrupted = stop, stop == "diverged", stop == "interrupted"
    r.final_val_step, r.final_val = r.val_curve[-1] if r.val_curve else (None, float("nan"))
    if r.interrupted and r.final_val_step != r.steps_done:
        last = "no validation loss yet" if r.final_val_step is None else (
            f"the last validation loss {r.final_val:.3f} is from step {r.final_val_step} "
            "(final_val_step)")
        print(f"interrupted: the model holds step {r.steps_done}'s weights; {last}",
              file=sys.stderr)
    _record_times(run)
    r.model = run.model
    return r


# ------------------------------------------------------------------------- resumable training state


def _save_state(run: _Run, folder: Path) -> None:
    """Rank 0 writes model, optimizer and every rank's batch generator, with JSON metadata."""
    gens = [run.gen.get_state()]
    if run.world > 1:
        gens = [None] * run.world
        dist.all_gather_object(gens, run.gen.get_state())
    if run.rank != 0:
        return
    _record_times(run)
    payload = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
               "generators": gens}
    write_state(folder, payload, {"format": STATE_FORMAT, "step": run.step, "world_size": run.world,
                                  "result": run.result.to_dict()})


def write_state(folder: str | os.PathLike, payload: dict, meta: dict) -> Path:
    """``payload`` (``torch.save``) and ``meta`` (JSON, with the payload's sha256) as a new pair.

    The JSON is written last and commits the pair; older pairs are removed only after it. An
    interruption at any moment leaves the previous pair or the new one intact, and ``read_state``
    takes the newest intact.
    """
    folder = Path(folder)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    digest = _files.sha256_bytes(data)
    stem = f"state-{meta['step']:08d}-{digest[:12]}"
    _files.atomic_write_bytes(folder / f"{stem}.pt", data)
    _files.atomic_write_json(folder / f"{stem}.json", {**meta, "sha256": digest})
    for old in [*folder.glob("state-*"),
                *folder.glob(".state-*.tmp")]:  # older pairs, a crashed write's parts
        if old.stem != stem:
            old.unlink(missing_ok=True)
    return folder / f"{stem}.json"


def read_state(folder: str | os.PathLike) -> tuple[dict, dict]:
    """(payload, metadata) of the newest committed, intact pair that ``write_state`` left."""
    for meta_path in sorted(Path(folder).glob("state-*.json"), reverse=True):
        try:
            meta = json.loads(meta_path.read_text())
            data = meta_path.with_suffix(".pt").read_bytes()
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("format") == STATE_FORMAT and _files.sha256_bytes(data) == meta.get("sha256"):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), meta
    raise FileNotFoundError(f"no intact training state in {folder}: train with state_dir and "
                            "checkpoint_every > 0 to write one, or call train(..., resume=False) "
                            "to start afresh")


def _resume(run: _Run, folder: Path) -> None:
    payload, meta = read_state(folder)
    if meta["world_size"] != run.world:
        raise ValueError(f"the training state in {folder} was written by {meta['world_size']} "
                         f"processes and this run has {run.world}; resume with as many (each "
                         "continues its own data stream)")
    saved = RunResult.from_dict(meta["result"])
    if (saved.model_config, saved.train_config) != (run.result.model_config,
                                                    run.result.train_config):
        raise ValueError(f"the training state in {folder} belongs to other configs; resume with "
                         "the configs it was written with, or give this run another state_dir")
    run.model.load_state_dict(payload["model"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.gen.set_state(payload["generators"][run.rank])
    for f in ("train_curve", "val_curve", "steps_done", "tokens_seen", "wall_s", "tokens_per_s",
              "first_step_s"):
        setattr(run.result, f, getattr(saved, f))
    run.prior_wall_s = saved.wall_s
    run.prior_train_s = saved.tokens_seen / saved.tokens_per_s if saved.tokens_per_s else 0.0


# -------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(model: CausalLM, path: str | os.PathLike,
                    result: RunResult | None = None) -> Path:
    """The weights as safetensors (atomic), config and result in the metadata. Notebook 04."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    meta = {"format": CHECKPOINT_FORMAT, "model_config": json.dumps(model.cfg.to_dict())}
    if result is not None:
        meta["result"] = json.dumps(result.to_dict())
    return _files.atomic_save_safetensors(model.state_dict(), path, metadata=meta)


def load_checkpoint(path: str | os.PathLike,
                    device: str | torch.device = "cpu") -> tuple[CausalLM, RunResult | None]:
    """(model, result) from ``save_checkpoint``'s file; safe to load (no pickle). Notebook 04."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a curse_of_depth checkpoint (format "
                         f"{meta.get('format')!r}); write it with "
                         "curse_of_depth.train.save_checkpoint")
    model = CausalLM(ModelConfig.from_dict(json.loads(meta["model_config"])))
    model.load_state_dict(load_file(str(path)), strict=True)
    result = RunResult.from_dict(json.loads(meta["result"])) if "result" in meta else None
    if result is not None:
        result.model = model
    return model.to(device).eval(), result


__all__ = ["TrainConfig", "RunResult", "train", "save_checkpoint",
           "load_checkpoint", "lr_at", "evaluate", "make_optimizer", "data_generator"]

if __name__ == "__main__":  # python -m curse_of_depth.train: the command line is workshop tooling
    from curse_of_depth.workshop.train_cli import main

    raise SystemExit(main())
