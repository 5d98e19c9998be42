"""The scale map: where (if anywhere) LayerNorm Scaling starts to beat Pre-LN, and the precomputed
bands.

Explained in notebook 07 (the scale map); the bands feed notebooks 03 and 04.

A *point* of the map is one training regime: corpus and tokenizer, width,
depth, and the number of training tokens (its own warmup + cosine schedule).
At each point several *arms* are trained, each a norm at a learning rate
(Pre-LN at its lr; LNS at the same lr, as the paper compares, and at its own
higher lr, since LNS shrinks every deep block's input and was measured to want
a >= 3x larger lr), over >= 3 seeds. A seed fixes init and data order, so arms
are compared *paired by seed*. The map reports, per point,

* the LNS - Pre-LN validation-loss gap, paired by seed, and its verdict (``stats.PairedGap``:
  a paired t-test at ``stats.ALPHA``);
* Pre-LN's deep-layer redundancy: the loss increase when one block of the
  deepest third is skipped (the curse of depth says it should become small).

The runner packs many small runs onto the GPUs as concurrent processes, each
a call of the package's own ``train()``; it starts a run only when the
deadline leaves time for it, so every call yields complete runs, and
``missing()`` lists what a later call (or a researcher with more GPUs) still
has to run. ``python -m curse_of_depth.workshop.sweep --help`` lists the commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..stats import ALPHA, PairedGap, gap_statement, paired
from . import plots, runtime

SKIP_CHEAP = 0.005  # nats: a block whose removal costs less than this is "redundant"
MIN_SEEDS = 3
EVAL_SEED = 12_345  # the map's final evaluation batches: the same for every seed and arm


@dataclass(frozen=True)
class Recipe:
    """The optimizer settings a run uses besides its learning rate (warmup 10%, cosine to 0.1 in
    all)."""

    name: str
    weight_decay: float
    betas: tuple[float, float]
    grad_clip: float  # 0 = no clipping

    def to_dict(self) -> dict:
        return {"name": self.name, "optimizer": "Adam" if self.weight_decay == 0 else "AdamW",
                "weight_decay": self.weight_decay, "betas": list(self.betas),
                "grad_clip": self.grad_clip, "warmup_frac": 0.1, "min_lr_frac": 0.1,
                "schedule": "linear warmup, cosine decay"}


RECIPES = {
    # the kit's default, as most LLM codebases train today (nanoGPT, LLaMA)
    "kit": Recipe("kit", 0.1, (0.9, 0.95), 1.0),
    # the paper's scripts (lmsdss/LayerNorm-Scaling run_130m.sh and siblings)
    "paper": Recipe("paper", 0.0, (0.9, 0.999), 0.0),
    # the paper's recipe with gradient clipping alone added: separates the parts of the recipe
    "paper+clip": Recipe("paper+clip", 0.0, (0.9, 0.999), 1.0),
}


@dataclass(frozen=True)
class Arm:
    """One norm at one peak learning rate, under one optimizer recipe (``RECIPES``)."""

    norm: str
    lr: float
    recipe: str = "kit"

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}: choose one of {', '.join(RECIPES)}")

    @property
    def key(self) -> str:
        base = f"{self.norm}@{self.lr:g}"
        return base if self.recipe == "kit" else f"{base}/{self.recipe}"


@dataclass(frozen=True)
class Point:
    """One regime of the map. ``tokens`` is the whole schedule's training tokens (steps = tokens /
    batch tokens)."""

    corpus: str
    d_model: int
    n_layers: int
    tokens: int
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    n_heads: int | None = None  # default: head width 32
    seq_len: int = 256
    batch_size: int = 128
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        if self.tokens < self.batch_tokens:
            raise ValueError(f"tokens={self.tokens} is less than one batch ({self.batch_tokens} "
                             "tokens); raise tokens or lower batch_size/seq_len")
        if not self.arms:
            raise ValueError("a point needs at least one arm (norm, lr)")

    @property
    def batch_tokens(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def steps(self) -> int:
        return max(1, round(self.tokens / self.batch_tokens))

    @property
    def heads(self) -> int:
        return self.n_heads or max(1, self.d_model // 32)

    @property
    def key(self) -> str:
        return f"{self.corpus}_d{self.d_model}_L{self.n_layers}_T{_tokens_label(self.tokens)}"

    @property
    def tokenizer(self) -> str:
        return "bpe" if self.corpus.endswith("-bpe") else "char"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arms"] = [a.key for a in self.arms]
        d.update(key=self.key, steps=self.steps, tokenizer=self.tokenizer)
        return d

    def cost(self) -> float:
        """Rough relative cost (token-blocks, width-weighted) for scheduling longest-first."""
        return self.tokens * self.n_layers * (self.d_model / 128) ** 1.5


def _tokens_label(tokens: int) -> str:
    return f"{tokens / 1e6:g}M"


def train_config(point: Point, arm: Arm, seed: int):
    """The package's ``TrainConfig`` for one run of a point (about 10 validation points per run).
    Notebook 07."""
    from ..train import TrainConfig

    r = RECIPES[arm.recipe]
    return TrainConfig(max_steps=point.steps, lr=arm.lr, batch_size=point.batch_size,
                       seq_len=point.seq_len, eval_every=max(1, point.steps // 10), eval_batches=8,
                       eval_batch_size=32, seed=seed, dtype=point.dtype, corpus=point.corpus,
                       weight_decay=r.weight_decay, betas=r.betas, grad_clip=r.grad_clip)


def model_config(point: Point, arm: Arm, vocab_size: int):
    from ..model import ModelConfig

    return ModelConfig(vocab_size=vocab_size, d_model=point.d_model, n_layers=point.n_layers,
                       n_heads=point.heads, seq_len=point.seq_len, norm=arm.norm)


# ---------------------------------------------------------------------------------------- the grids

PRE, LNS, LNS_HI = Arm("pre", 3e-3), Arm("lns", 3e-3), Arm("lns", 1e-2)
THREE_ARMS = (PRE, LNS,
              LNS_HI)  # Pre-LN; LNS at the same lr (the paper's protocol); LNS at a 3x higher lr
SAME_LR_ARMS = (PRE, LNS)
M = 1_000_000


def map_grid() -> list[Point]:
    """The scale map's points, most informative first (a budget-limited call runs a prefix of this
    list). Notebook 07."""
    g = "gcide"
    pts = [Point(g, 128, L, 8 * M, THREE_ARMS) for L in (12, 24, 48,
                                                         96)]  # depth, short schedule (244 steps)
    pts += [Point(g, 128, 48, 32 * M, SAME_LR_ARMS),
            Point(g, 128, 24, 32 * M, THREE_ARMS),  # depth, ~1 epoch
            Point(g, 128, 12, 32 * M, SAME_LR_ARMS)]
    pts += [Point("gcide-bpe", 128, L, 8 * M, SAME_LR_ARMS) for L in (24,
                                                                      # tokenizer (0.8 epoch of BPE)
                                                                      48)]
    pts += [Point(g, 256, L, 8 * M, SAME_LR_ARMS) for L in (24, 48)]  # width
    pts += [Point(g, 128, 96, 32 * M, SAME_LR_ARMS)]
    pts += [Point(g, 512, 24, 8 * M, SAME_LR_ARMS), Point(g, 256, 48, 32 * M, SAME_LR_ARMS)]
    pts += [Point(g, 128, L, 128 * M, SAME_LR_ARMS) for L in (24,
                                                              48)]  # far past 16M tokens (4 epochs)
    pts += [Point("gcide-bpe", 256, 48, 32 * M, SAME_LR_ARMS)]
    return pts


def tiny_grid() -> list[Point]:
    """A CPU-sized grid for tests: two depths, two arms, three seeds, a few steps. Notebook 07."""
    arms = (Arm("pre", 3e-3), Arm("lns", 3e-3))
    return [Point("shakespeare", 32, L, 6 * 8 * 32, arms, seq_len=32, batch_size=8,
                  dtype="fp32") for L in (2, 3)]


def recipe_grid() -> list[Point]:
    """The recipe map: Pre-LN, LNS and Peri-LN under the paper's and the kit's optimizer recipe,
    three learning rates each, at depth 24 and 48 (32M characters), then depth 12 and 96. Notebook
    07.

    Listed as *cells* (depth x recipe x lr, every norm and seed) in the order they decide the
    headline, so a budget-limited call leaves complete cells: the shared lr 3e-3 first (with the
    clipping ablation, the paper's recipe plus clipping), then the paper's own lr 1e-3, LNS's
    preferred 1e-2, and the remaining lrs.
    """
    g, norms = "gcide", ("pre", "lns", "peri")

    def cell(depth: int, recipe: str, lr: float, tokens: int = 32 * M) -> Point:
        return Point(g, 128, depth, tokens, tuple(Arm(n, lr, recipe) for n in norms))

    order = [("paper", 3e-3), ("kit", 3e-3), ("paper+clip", 3e-3), ("paper", 1e-3), ("kit", 1e-2),
             ("paper", 1e-2), ("kit", 1e-3), ("paper+clip", 1e-2), ("paper+clip", 1e-3)]
    pts = [cell(L, recipe, lr) for recipe, lr in order for L in (48, 24)]
    pts += [cell(L, recipe, lr) for L in (12, 96) for recipe, lr in order[:6]]
    return pts


GRIDS = {"map": map_grid, "tiny": tiny_grid, "recipes": recipe_grid}


def grid(name: str) -> list[Point]:
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}: choose one of {', '.join(GRIDS)}")
    return GRIDS[name]()


# ------------------------------------------------------------------------------------------ one run


@dataclass
class Job:
    point: Point
    arm: Arm
    seed: int
    checkpoint: str | None = None  # save the trained model here (safetensors), if set
    # torch.compile the training step; None = the trainer's default (on with CUDA)
    compile: bool | None = None
    # write a resumable training state every N steps (0: never); a killed run then continues
    state_every: int = 0

    @property
    def name(self) -> str:
        return f"{self.point.key}__{self.arm.key.replace('/', '_')}__s{self.seed}"

    def spec(self) -> dict:
        p = self.point.to_dict()
        return {"point": {k: p[k] for k in ("corpus", "d_model", "n_layers", "tokens", "seeds",
                                            "n_heads", "seq_len",
                                              "batch_size", "dtype")},
                "arms": [[a.norm, a.lr, a.recipe] for a in self.point.arms],
                "arm": [self.arm.norm, self.arm.lr, self.arm.recipe], "seed": self.seed,
                "checkpoint": self.checkpoint, "compile": self.compile,
                "state_every": self.state_every}

    @classmethod
    def from_spec(cls, spec: dict) -> Job:
        p = dict(spec["point"])
        p["seeds"] = tuple(p["seeds"])
        point = Point(arms=tuple(Arm(*a) for a in spec["arms"]), **p)
        return cls(point, Arm(*spec["arm"]), int(spec["seed"]), spec.get("checkpoint"),
                   spec.get("compile"), int(spec.get("state_every") or 0))


def jobs_for(points: Iterable[Point]) -> list[Job]:
    return [Job(p, a, s) for p in points for s in p.seeds for a in p.arms]


def skip_costs(model, batches, device, autocast) -> tuple[float, list[float]]:
    """(base loss, loss increase when each block alone is skipped), averaged over ``batches``: the
    mean of ``analysis.layer_removal_scan`` over the batches. Every block: the curse metric compares
    deep with shallow ones. Notebook 07."""
    import torch

    from ..analysis import layer_removal_scan

    model.eval()
    scans = []
    for x, y in batches:
        with torch.no_grad(), autocast():
            scans.append(layer_removal_scan(model, x.to(device), y.to(device), progress=False))
    return (float(np.mean([s.base_loss for s in scans])),
            np.mean([s.delta for s in scans], axis=0).tolist())


def deep_third(n_layers: int) -> list[int]:
    """1-based block numbers of the deepest third (at least one block). Notebook 07."""
    k = max(1, n_layers // 3)
    return list(range(n_layers - k + 1, n_layers + 1))


def run_job(spec: dict, out: Path, progress: bool = False) -> dict:
    """Train one run with the package trainer, measure it, write ``out`` (JSON). Notebook 07 (worker
    processes)."""
    import contextlib

    import torch

    from ..data import load_corpus
    from ..train import _autocast, _resolve_device, evaluate, save_checkpoint, train
    from . import corpora  # noqa: F401  (registers the map's corpora)
    from .results import code_version, hardware

    job = Job.from_spec(spec)
    corpus = load_corpus(job.point.corpus)
    tcfg = train_config(job.point, job.arm, job.seed)
    mcfg = model_config(job.point, job.arm, corpus.vocab_size)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = job.point.dtype != "fp32"
    t0 = time.perf_counter()
    state = state_dir(out) if job.state_every else None
    resumed = has_state(state) if state else False
    result = train(mcfg, tcfg, corpus=corpus, progress=progress,
                   compile=spec.get("compile"),  # None: on with CUDA
                   state_dir=state, checkpoint_every=job.state_every, resume=resumed)
    if result.stop_reason == "interrupted":  # never a record of a half-trained run
        raise RuntimeError(f"{job.name} was interrupted at step {result.steps_done}"
                           + (f"; its state in {state} continues it" if state else ""))
    device = _resolve_device(tcfg)
    autocast = _autocast(device, tcfg) if not result.diverged else contextlib.nullcontext
    run = result.to_dict()  # the whole per-step training curve: the instability rule reads it
    record = {"job": spec, "name": job.name, "point": job.point.key, "arm": job.arm.key,
              "norm": job.arm.norm, "lr": job.arm.lr, "recipe": job.arm.recipe, "seed": job.seed,
              "run": run, "diverged": result.diverged, "code_version": code_version(),
              "hardware": hardware(), "resumed": resumed}
    if not result.diverged:
        eval_batches = corpus.fixed_batches("val", 16, 32, job.point.seq_len, seed=EVAL_SEED)
        base, deltas = skip_costs(result.model, eval_batches[:8], device, autocast)
        record.update(final_eval=evaluate(result.model, eval_batches, device, autocast),
                      skip_layers=list(range(1, job.point.n_layers + 1)), skip_base=base,
                      skip_delta=deltas)
    else:
        record.update(final_eval=None, skip_layers=[], skip_base=None, skip_delta=[])
    if job.checkpoint:
        path = save_checkpoint(result.model.cpu(), job.checkpoint, result)
        from .._files import sha256_file

        record["checkpoint"] = {"path": Path(job.checkpoint).name, "sha256": sha256_file(path)}
    record["wall_s"] = round(time.perf_counter() - t0, 2)
    from .._files import atomic_write_json

    atomic_write_json(out, record)
    if state is not None:  # the run is recorded: its state (which this job wrote) has served
        shutil.rmtree(state, ignore_errors=True)
    return record


def state_dir(out: Path) -> Path:
    """Where the worker writing ``out`` keeps its resumable training state. Notebook 07."""
    return Path(out).parent / "state" / Path(out).stem


def has_state(folder: Path) -> bool:
    """Whether ``folder`` holds an intact training state to resume (``train.read_state``)."""
    from ..train import read_state

    try:
        read_state(folder)
    except FileNotFoundError:
        return False
    return True


# ------------------------------------------------------------------------------------------- runner


@dataclass
class RunnerReport:
    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def memory_gb(job: Job) -> float:
    """A generous estimate of one run's GPU memory: ~60 bytes per token, block and unit of width,
    logits, 2 GB. Notebook 07."""
    p = job.point
    vocab = 50_000 if p.tokenizer == "bpe" else 256
    return 2.0 + p.batch_tokens * (p.n_layers * p.d_model * 60 + vocab * 12) / 1e9


def run_jobs(jobs: Sequence[Job], out_dir: Path, gpus: Sequence[str] = (), per_device: int = 1,
             deadline_s: float | None = None, estimate_s=None, log=print,
             device_gb: float = 120.0) -> RunnerReport:
    """Run ``jobs`` as worker processes, ``per_device`` at a time on each GPU (or on the CPU when
    ``gpus`` is empty).

    A job starts on a device only while the estimated memory of its runs (``memory_gb``) stays under
    ``device_gb``. A job starts only if ``estimate_s(job)`` fits before the deadline; jobs still
    running at the deadline are killed (their runs are then missing, never half-written: workers
    write atomically). Jobs whose result file already exists are skipped, so a second call continues
    where the first stopped.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    report = RunnerReport()
    t0 = time.time()
    slots = [(g, i) for g in (gpus or ["cpu"]) for i in range(per_device)]
    free = list(slots)
    running: dict = {}
    queue = [j for j in jobs if not (out_dir / f"{j.name}.json").exists()]
    # runs that an earlier call left half-way (a resumable state on disk) go first
    queue.sort(key=lambda j: not any((state_dir(out_dir / f"{j.name}.json")).glob("state-*.json")))
    logs = out_dir / "logs"
    logs.mkdir(exist_ok=True)

    def remaining() -> float:
        return math.inf if deadline_s is None else deadline_s - (time.time() - t0)

    def used_gb(device: str) -> float:
        return sum(memory_gb(j) for j, s, _ in running.values() if s[0] == device)

    while queue or running:
        while free and queue:
            job = queue[0]
            if estimate_s is not None and estimate_s(job) > remaining():
                # too long for what is left; a shorter job may still fit
                report.not_started.append(job.name)
                queue.pop(0)
                continue
            fits = [s for s in free if s[0] == "cpu" or used_gb(s[0]) + memory_gb(job) <= device_gb]
            if not fits:
                break  # wait for a run to finish and free memory
            slot = min(fits, key=lambda s: (used_gb(s[0]), s))  # the least loaded device
            free.remove(slot)
            queue.pop(0)
            env = dict(os.environ)
            if slot[0] != "cpu":
                env["CUDA_VISIBLE_DEVICES"] = slot[0]
            env.setdefault("COD_THREADS", "1")
            cmd = [sys.executable, "-m", "curse_of_depth.workshop.sweep", "worker", "--spec",
                   json.dumps(job.spec()), "--out", str(out_dir / f"{job.name}.json")]
            with open(logs / f"{job.name}.log", "w") as f:
                proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
            running[proc] = (job, slot, time.time())
        time.sleep(0.2)
        for proc in list(running):
            job, slot, started = running[proc]
            if proc.poll() is not None:
                del running[proc]
                free.append(slot)
                ok = proc.returncode == 0 and (out_dir / f"{job.name}.json").exists()
                (report.finished if ok else report.failed).append(job.name)
                log(f"[{time.time() - t0:6.0f}s] {'done' if ok else 'FAILED'} {job.name} "
                    f"({time.time() - started:.0f}s on {slot[0]})")
            elif remaining() <= 0:
                proc.kill()
                proc.wait()
                del running[proc]
                report.killed.append(job.name)
                log(f"[{time.time() - t0:6.0f}s] killed at the deadline: {job.name}")
        if remaining() <= 0 and queue:
            report.not_started.extend(j.name for j in queue)
            queue.clear()
    report.wall_s = round(time.time() - t0, 1)
    return report


def throughput_estimator(rates: dict[str, float] | None = None, default_rate: float = 2.0e7,
                         overhead_s: float = 45.0):
    """``estimate_s(job)``: seconds from a table of measured rates (``{"d128": token-blocks/s per
    run}``). Notebook 07."""
    rates = dict(rates or {})
    overhead_s = rates.pop("overhead_s", overhead_s)

    def estimate(job: Job) -> float:
        p = job.point
        rate = rates.get(f"d{p.d_model}", default_rate * (128 / p.d_model) ** 1.5)
        return overhead_s + p.tokens * p.n_layers / rate
    return estimate


# -------------------------------------------------------------------------------------- aggregation


def load_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


def _mean(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def final_loss(record: dict) -> float:
    """The run's final validation loss on the map's common evaluation batches (nan if it diverged).
    Notebook 07."""
    v = record.get("final_eval")
    return float("nan") if v is None or record.get("diverged") else float(v)


def arm_table(records: Iterable[dict]) -> dict[str, dict[str, dict[int, dict]]]:
    """``{point key: {arm key: {seed: record}}}``; a repeated run keeps the last record. Notebook
    07."""
    table: dict[str, dict[str, dict[int, dict]]] = {}
    for r in records:
        table.setdefault(r["point"], {}).setdefault(r["arm"], {})[int(r["seed"])] = r
    return table


def gap(a: dict[int, dict], b: dict[int, dict]) -> dict | None:
    """``stats.paired`` of two arms' runs (b - a over the seeds both finished without diverging), as
    a dict; None with fewer than 2 such seeds. Notebook 07."""
    la, lb = ({s: final_loss(r) for s, r in runs.items()} for runs in (a, b))
    if sum(1 for s in la if s in lb and math.isfinite(la[s]) and math.isfinite(lb[s])) < 2:
        return None
    return paired(_norm_of(a), _norm_of(b), la, lb).to_dict()


def _norm_of(runs: dict[int, dict]) -> str:
    return next(iter(runs.values()))["norm"]


def deep_skip_deltas(record: dict) -> list[float]:
    """The skip costs of the deepest third's blocks (records hold them for every block, or for the
    deep third only)."""
    deep = set(deep_third(max(record["skip_layers"])))  # both lists end with the last block
    return [d for layer, d in zip(record["skip_layers"], record["skip_delta"]) if layer in deep]


def redundancy(runs: dict[int, dict]) -> dict | None:
    """Skip-one-block cost of the deepest third, over seeds: mean Δ, smallest Δ, share of blocks
    below SKIP_CHEAP. Notebook 07."""
    deltas = [np.asarray(deep_skip_deltas(r)) for r in runs.values() if r.get("skip_delta")]
    if not deltas:
        return None
    per_seed_mean = np.array([d.mean() for d in deltas])
    all_d = np.concatenate(deltas)
    return {"mean_delta": float(per_seed_mean.mean()),
            "sd_delta": float(per_seed_mean.std(ddof=1)) if len(deltas) > 1 else 0.0,
            "min_delta": float(all_d.min()), "cheap_share": float((all_d < SKIP_CHEAP).mean()),
            "n": len(deltas), "blocks": runs[next(iter(runs))].get("skip_layers", [])}


def summarize(points: Sequence[Point], records: Iterable[dict]) -> list[dict]:
    """One row per point: arms (mean, sd, n), the LNS - Pre-LN gaps (same lr, own lr), redundancy,
    completeness. Notebook 07."""
    table = arm_table(records)
    rows = []
    for p in points:
        arms = table.get(p.key, {})
        row = {"point": p.to_dict(), "arms": {}, "complete": is_complete(p, arms)}
        for a in p.arms:
            runs = arms.get(a.key, {})
            losses = np.array([final_loss(r) for r in runs.values()])
            ok = losses[np.isfinite(losses)]
            speed = _mean(r["run"]["tokens_per_s"] for r in runs.values())
            row["arms"][a.key] = {"n": len(runs), "diverged": int((~np.isfinite(losses)).sum()),
                                  "mean": float(ok.mean()) if ok.size else None,
                                  "sd": float(ok.std(ddof=1)) if ok.size > 1 else None,
                                  "tokens_per_s": speed, "redundancy": redundancy(runs)}
        pre = arms.get(PRE.key, {})
        row["gap_same_lr"] = gap(pre, arms.get(LNS.key, {})) if LNS in p.arms else None
        row["gap_own_lr"] = gap(pre, arms.get(LNS_HI.key, {})) if LNS_HI in p.arms else None
        rows.append(row)
    return rows


def is_complete(point: Point, arms: dict[str, dict[int, dict]], min_seeds: int = MIN_SEEDS) -> bool:
    """Every arm has finished the same >= ``min_seeds`` seeds (a diverged run counts as finished: it
    is a result). Notebook 07."""
    seed_sets = [set(arms.get(a.key, {})) & set(point.seeds) for a in point.arms]
    common = set.intersection(*seed_sets) if seed_sets else set()
    return len(common) >= min(min_seeds, len(point.seeds))


def missing(points: Sequence[Point], records: Iterable[dict],
            min_seeds: int = MIN_SEEDS) -> list[dict]:
    """The runs each incomplete point still needs: ``[{"point", "arm", "seeds"}]``. Notebook 07."""
    table = arm_table(records)
    out = []
    for p in points:
        arms = table.get(p.key, {})
        if is_complete(p, arms, min_seeds):
            continue
        for a in p.arms:
            todo = [s for s in p.seeds if s not in arms.get(a.key, {})]
            if todo:
                out.append({"point": p.key, "arm": a.key, "seeds": todo})
    return out


def map_verdict(row: dict, which: str = "gap_same_lr", label: str = "") -> str:
    """``stats.gap_statement`` of one point's gap (no floats: the same line in every run). Notebook
    07."""
    key = row["point"]["key"] + label
    if not row.get(which):
        return f"{key}: no paired result"
    return gap_statement(key, PairedGap.from_dict(row[which]))


def stored_map_complete(data: dict, min_seeds: int = MIN_SEEDS) -> tuple[bool, list[str]]:
    """Re-derive completeness from the stored raw runs: (every point the summary lists as complete
    really has ``min_seeds`` paired seeds in every arm, the points so listed). Notebook 07's first
    claim."""
    points = {p.key: p for p in grid(data["grid"])}
    listed = [r["point"]["key"] for r in data["summary"] if r["complete"]]
    table = arm_table(data["runs"])
    ok = bool(listed) and all(k in points and is_complete(points[k], table.get(k, {}), min_seeds)
                              for k in listed)
    # every counted run must hold a finite loss or be marked diverged, and its skip costs
    counted = [r for key in listed for runs in table.get(key, {}).values() for r in runs.values()]
    measured = all(r.get("diverged") or (math.isfinite(final_loss(r)) and r.get("skip_delta"))
                   for r in counted)
    return ok and measured, listed


def format_table(rows: Sequence[dict]) -> str:
    """The complete points as a text table: gaps (mean +- sd over paired seeds) and deep-third skip
    costs. Notebook 07."""
    lines = [f"{'point':28s} {'steps':>5s} {'Pre-LN':>14s} {'LNS':>14s} {'LNS-Pre (same lr)':>20s} "
             f"{'p':>5s} {'LNS@1e-2 - Pre':>17s} {'skip Pre':>9s} {'skip LNS':>9s}"]
    for r in rows:
        if not r["complete"]:
            continue
        g, o = r["gap_same_lr"], r.get("gap_own_lr")
        pre, lns = r["arms"][PRE.key], r["arms"][LNS.key]
        own = f"{o['mean']:+.3f} ± {o['sd']:.3f}" if o else "—"
        lines.append(f"{r['point']['key']:28s} {r['point']['steps']:5d} {pre['mean']:7.3f} ± "
                     f"{pre['sd']:.3f} {lns['mean']:7.3f} ± {lns['sd']:.3f} {g['mean']:+13.3f} ± "
                     f"{g['sd']:.3f} {g['p']:5.2f} {own:>17s} "
                     f"{pre['redundancy']['mean_delta']:9.4f} "
                     f"{lns['redundancy']['mean_delta']:9.4f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- the map's figure

def _map_series(rows: list[dict], corpus: str, d_model: int, gap_key: str) -> dict:
    """{tokens: [(depth, gap row, Pre-LN redundancy, LNS redundancy), ...]} of one corpus and width.
    """
    series: dict = {}
    for r in rows:
        p = r["point"]
        wanted = (p["corpus"], p["d_model"]) == (corpus, d_model)
        if not (r.get("complete") and wanted and r.get(gap_key)):
            continue
        pre = r["arms"].get("pre@0.003", {}).get("redundancy")
        lns = r["arms"].get("lns@0.003", {}).get("redundancy")
        series.setdefault(p["tokens"], []).append((p["n_layers"], r[gap_key], pre, lns))
    return {t: sorted(v, key=lambda x: x[0]) for t, v in sorted(series.items())}


def plot_scale_map(rows: list[dict], gap_key: str = "gap_same_lr", title: str | None = None):
    """Left: LNS - Pre-LN validation gap (mean +- sd over paired seeds) against depth, one line per
    token budget. Right: Pre-LN's (solid) and LNS's (dashed) loss increase when one block of the
    deepest third is skipped.

    Takes ``results.load("scale_map")["data"]["summary"]`` rows. Notebook 07.
    """
    fig, (ax, ax2) = plots.subplots(1, 2)
    styles = [("gcide", 128, "o", "-"), ("gcide-bpe", 128, "s", ":"), ("gcide", 256, "D", "--")]
    token_colors = {}
    for corpus, width, marker, ls in styles:
        for tokens, pts in _map_series(rows, corpus, width, gap_key).items():
            color = token_colors.setdefault(tokens, f"C{len(token_colors)}")
            depth = [p[0] for p in pts]
            tok = "BPE" if corpus.endswith("bpe") else "char"
            label = f"{tokens / 1e6:g}M tokens, {tok}, d{width}"
            ax.errorbar(depth, [p[1]["mean"] for p in pts], yerr=[p[1]["sd"] for p in pts],
                        marker=marker, ls=ls, color=color, capsize=3, label=label)
            for k, (norm_ls, alpha) in enumerate((("-", 1.0), ("--", 0.6))):
                red = [p[2 + k] for p in pts]
                keep = [(d, r) for d, r in zip(depth, red) if r is not None]
                if keep:
                    ax2.errorbar([d for d, _ in keep],
                                 [max(r["mean_delta"], 1e-5) for _, r in keep],
                                 yerr=[r["sd_delta"] for _, r in keep], marker=marker, ls=norm_ls,
                                 color=color, alpha=alpha, capsize=3,
                                 label=f"{'Pre-LN' if k == 0 else 'LNS'}, {label}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("depth (blocks)")
    ax.set_ylabel("LNS − Pre-LN final val loss (nats)")
    ax.set_title(title or "below 0: LNS ahead · above 0: Pre-LN ahead")
    ax.legend(fontsize="x-small")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("depth (blocks)")
    ax2.set_ylabel("loss increase when one deep block is skipped")
    ax2.set_title("deepest third: mean skip cost per block")
    ax2.legend(fontsize="xx-small", ncol=1)
    for a in (ax, ax2):
        depths = sorted({r["point"]["n_layers"] for r in rows if r.get("complete")})
        if depths:
            a.set_xticks(depths, [str(d) for d in depths])
    ax2.set_ylim(bottom=max(1e-5, ax2.get_ylim()[0]))
    return fig


def extend_stored_map(name: str = "scale_map", grid_name: str = "map",
                      gpus: Sequence[str] | None = None, per_device: int = 6,
                      deadline_s: float | None = None, results_folder: Path | None = None,
                      work_dir: Path | None = None) -> dict:
    """``COD_MODE=full``: run the stored map's missing points on this machine's GPUs and store the
    merged map.

    The stored runs are written back as run files first, so the runner skips them and the new
    ``scale_map`` holds old and new runs together. Returns the new stored record. Notebook 07.
    """
    from .._files import atomic_write_json, data_dir
    from . import results

    record = results.load(name, folder=results_folder)
    folder = Path(work_dir) if work_dir else data_dir() / f"{name}_runs"
    folder.mkdir(parents=True, exist_ok=True)
    for r in record["data"]["runs"]:
        atomic_write_json(folder / f"{r['name']}.json", r)
    todo = {m["point"] for m in record["data"]["missing"]}
    points = [p for p in grid(grid_name) if p.key in todo]
    if gpus is None:
        gpus = _gpus("auto")
    report = run_jobs(jobs_for(points), folder, gpus, per_device, deadline_s)
    main(["collect", "--grid", grid_name, "--runs", str(folder), "--name", name,
          "--command", "curse_of_depth.workshop.sweep.extend_stored_map (COD_MODE=full): "
                       f"{len(report.finished)} new runs",
          *(["--results-dir", str(results_folder)] if results_folder else [])])
    return results.load(name, folder=results_folder)


# -------------------------------------------------------------------------------- the bands (03/04)

BAND_TAGS = {
    "d64_L24_s80": dict(d_model=64, n_layers=24, n_heads=4, seq_len=128, batch_size=16, lr=3e-3,
                        max_steps=80, eval_every=10),
    "d64_L24_s480": dict(d_model=64, n_layers=24, n_heads=4, seq_len=128, batch_size=16, lr=3e-3,
                         max_steps=480, eval_every=40),
    "smoke": dict(d_model=32, n_layers=4, n_heads=4, seq_len=64, batch_size=8, lr=3e-3,
                  max_steps=30, eval_every=10),
}
BAND_NORMS = ("pre", "lns", "post", "mix")
BAND_SEEDS = (0, 1, 2, 3, 4)
CHECKPOINT_TAG = "d64_L24_s480"  # seed-0 Pre-LN and LNS checkpoints ship for notebook 04


def band_configs(tag: str, norm: str, seed: int, vocab_size: int, dtype: str = "fp32"):
    """(ModelConfig, TrainConfig) of one band run; the configuration notebook 03 trains live, with
    ``seed``."""
    from ..model import ModelConfig
    from ..train import TrainConfig

    if tag not in BAND_TAGS:
        raise ValueError(f"unknown band tag {tag!r}: choose one of {', '.join(BAND_TAGS)}")
    c = BAND_TAGS[tag]
    mcfg = ModelConfig(vocab_size=vocab_size, d_model=c["d_model"], n_layers=c["n_layers"],
                       n_heads=c["n_heads"], seq_len=c["seq_len"], norm=norm)
    tcfg = TrainConfig(max_steps=c["max_steps"], lr=c["lr"], batch_size=c["batch_size"],
                       seq_len=c["seq_len"], eval_every=c["eval_every"], seed=seed, dtype=dtype)
    return mcfg, tcfg


def run_band_group(tag: str, norm: str, seeds: Sequence[int], out: Path, dtype: str = "fp32",
                   checkpoint_dir: Path | None = None) -> dict:
    """Train one norm's seeds of one band (in this process) and write their ``RunResult.to_dict()``
    list. Notebooks 03/04."""
    import torch

    from .._files import atomic_write_json, sha256_file
    from ..data import load_corpus
    from ..train import save_checkpoint, train

    if torch.cuda.is_available():  # fp32 bands must be fp32 matmuls too, like the live CPU runs
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    corpus = load_corpus("shakespeare")
    runs, ckpts = [], {}
    t0 = time.perf_counter()
    for seed in seeds:
        mcfg, tcfg = band_configs(tag, norm, seed, corpus.vocab_size, dtype)
        result = train(mcfg, tcfg, corpus=corpus, progress=False)
        run = result.to_dict()
        run["seed"] = seed
        runs.append(run)
        if checkpoint_dir is not None and tag == CHECKPOINT_TAG and seed == 0 and norm in ("pre",
                                                                                           "lns"):
            path = save_checkpoint(result.model.cpu(),
                                   Path(checkpoint_dir) / f"ckpt_{tag}_{norm}.safetensors", result)
            ckpts[path.name] = sha256_file(path)
    from .results import code_version, hardware

    record = {"tag": tag, "norm": norm, "seeds": list(seeds), "runs": runs, "checkpoints": ckpts,
              "wall_s": round(time.perf_counter() - t0, 2), "hardware": hardware(),
              "code_version": code_version()}
    atomic_write_json(out, record)
    return record


def collect_bands(folder: Path, command: str, save: bool = True,
                  results_folder: Path | None = None) -> list[str]:
    """Merge the band groups in ``folder`` into one ``bands_<tag>`` result per tag (the agreed
    format). Notebooks 03/04."""
    from . import results

    groups: dict[str, dict[str, dict]] = {}
    for p in sorted(Path(folder).glob("band_*.json")):
        g = json.loads(p.read_text())
        groups.setdefault(g["tag"], {})[g["norm"]] = g
    saved = []
    for tag, by_norm in groups.items():
        missing_norms = [n for n in BAND_NORMS if n not in by_norm]
        if missing_norms:
            raise ValueError(f"band {tag!r} lacks norms {missing_norms}; rerun: python -m "
                             "curse_of_depth.workshop.sweep bands")
        first = by_norm["pre"]["runs"][0]
        model = {k: v for k, v in first["model_config"].items() if k != "norm"}
        train_cfg = dict(first["train_config"])
        train_cfg.pop("seed")
        data = {"model": model, "train": train_cfg,
                "runs": {n: by_norm[n]["runs"] for n in BAND_NORMS}}
        ckpts = {k: v for g in by_norm.values() for k, v in g.get("checkpoints", {}).items()}
        seeds = sorted({s for g in by_norm.values() for s in g["seeds"]})
        prov = results.provenance(seeds=seeds, wall_s=sum(g["wall_s"] for g in by_norm.values()),
                                  command=command, checkpoints_sha256=ckpts,
                                  note="fp32 on GPU (TF32 off); wall_s is the sum over the norms' "
                                       "processes, which ran concurrently")
        prov["hardware"] = by_norm["pre"].get("hardware", prov["hardware"])
        if save:
            results.save(f"bands_{tag}", data, prov, folder=results_folder)
        saved.append(tag)
    return saved


# ---------------------------------------------------------------------------------------------- CLI


def _gpus(arg: str) -> list[str]:
    if arg == "auto":
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    return [g for g in arg.split(",") if g] if arg else []


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m curse_of_depth.workshop.sweep",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train a grid's missing runs as concurrent worker processes")
    r.add_argument("--grid", default="map", choices=sorted(GRIDS))
    r.add_argument("--points", default="", help="comma-separated point keys (default: all, in grid "
                                                "order)")
    r.add_argument("--first", type=int, default=0, help="only the first N points of the grid")
    r.add_argument("--depths", default="", help="comma-separated depths: only the points of these "
                                                "depths")
    r.add_argument("--names", type=Path, default=None, help="a file of run names, one per line: "
                                                            "only these runs")
    r.add_argument("--out", type=Path, required=True, help="folder for one JSON per run")
    r.add_argument("--gpus", default="auto", help="'auto', '' (CPU) or a list like 0,1")
    r.add_argument("--per-device", type=int, default=1, help="concurrent runs per GPU (or on the "
                                                             "CPU)")
    r.add_argument("--deadline", type=float, default=None, help="seconds: start no run that would "
                                                                "not finish")
    r.add_argument("--state-every", type=int, default=0, help="write each run's resumable state "
                   "every N steps (in OUT/state/); a run killed at the deadline continues from it "
                   "in the next call")
    r.add_argument("--no-compile", action="store_true", help="run eager (default: torch.compile on "
                                                             "a GPU)")
    r.add_argument("--device-gb", type=float, default=120.0, help="GPU memory the runs may take on "
                                                                  "each device "
                   "(estimated by memory_gb)")
    r.add_argument("--rates", default="", help="JSON {\"d128\": token-blocks/s per run, "
                                               "\"overhead_s\": s} for the "
                   "deadline estimate")
    w = sub.add_parser("worker", help="(internal) one run")
    w.add_argument("--spec", required=True)
    w.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("collect", help="aggregate run JSONs into the results pack (scale_map)")
    c.add_argument("--grid", default="map", choices=sorted(GRIDS))
    c.add_argument("--runs", type=Path, nargs="+", required=True, help="folders of run JSONs")
    c.add_argument("--name", default="scale_map")
    c.add_argument("--command", default="", help="the command that made the runs (for provenance)")
    c.add_argument("--results-dir", type=Path, default=None)
    c.add_argument("--code-note", default="", help="which code made the runs, when the runs could "
                                                   "not record it")
    b = sub.add_parser("bands", help="train the precomputed bands of notebooks 03/04 (one process "
                                     "per tag x norm)")
    b.add_argument("--tags", default=",".join(BAND_TAGS))
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--gpus", default="auto")
    b.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "auto"))
    bg = sub.add_parser("band-group", help="(internal) one tag x norm")
    bg.add_argument("--tag", required=True)
    bg.add_argument("--norm", required=True)
    bg.add_argument("--seeds", default=",".join(map(str, BAND_SEEDS)))
    bg.add_argument("--out", type=Path, required=True)
    bg.add_argument("--dtype", default="fp32")
    bg.add_argument("--checkpoint-dir", type=Path, default=None)
    cb = sub.add_parser("collect-bands", help="merge band groups into bands_<tag> results")
    cb.add_argument("--runs", type=Path, required=True)
    cb.add_argument("--command", default="")
    cb.add_argument("--results-dir", type=Path, default=None)
    s = sub.add_parser("status", help="print which points of a grid are complete and which runs "
                                      "are missing")
    s.add_argument("--grid", default="map", choices=sorted(GRIDS))
    s.add_argument("--runs", type=Path, nargs="+", required=True)
    return parser


def _cmd_run(args) -> int:
    points = grid(args.grid)
    if args.points:
        by_key = {p.key: p for p in points}
        unknown = set(args.points.split(",")) - set(by_key)
        if unknown:
            raise SystemExit(f"unknown point keys {sorted(unknown)}; known: {list(by_key)}")
        # in the order given: longest first packs GPUs best
        points = [by_key[k] for k in args.points.split(",")]
    if args.first:
        points = points[:args.first]
    if args.depths:
        points = [p for p in points if p.n_layers in {int(d) for d in args.depths.split(",")}]
    est = throughput_estimator(json.loads(args.rates)) if args.rates else None
    compile_ = False if args.no_compile else None
    jobs = [dataclasses.replace(j, compile=compile_) for j in jobs_for(points)]
    if args.names:  # these runs only, in the file's order
        order = {name: i for i, name in enumerate(args.names.read_text().split())}
        jobs = sorted((j for j in jobs if j.name in order), key=lambda j: order[j.name])
    if args.state_every:
        jobs = [dataclasses.replace(j, state_every=args.state_every) for j in jobs]
    report = run_jobs(jobs, args.out, _gpus(args.gpus), args.per_device, args.deadline, est,
                      device_gb=args.device_gb)
    print(json.dumps(asdict(report)))
    return 0 if not report.failed else 1


def _cmd_bands(args) -> int:
    gpus = _gpus(args.gpus) or ["cpu"]
    args.out.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, (tag, norm) in enumerate((t, n) for t in args.tags.split(",") for n in BAND_NORMS):
        env = dict(os.environ, COD_THREADS="1")
        if gpus[0] != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        cmd = [sys.executable, "-m", "curse_of_depth.workshop.sweep", "band-group", "--tag", tag,
               "--norm", norm, "--out", str(args.out / f"band_{tag}_{norm}.json"), "--dtype",
               args.dtype, "--checkpoint-dir", str(args.out)]
        procs.append((tag, norm, subprocess.Popen(cmd, env=env)))
    bad = [(t, n) for t, n, p in procs if p.wait() != 0]
    print("band groups failed:" if bad else "all band groups done", bad or "")
    return 1 if bad else 0


def _cmd_collect(args, records: list[dict]) -> int:
    from . import results

    points = grid(args.grid)
    rows = summarize(points, records)
    data = {"grid": args.grid, "points": [p.to_dict() for p in points], "summary": rows,
            "missing": missing(points, records), "runs": records, "alpha": ALPHA,
            "skip_cheap": SKIP_CHEAP}
    prov = results.provenance(seeds=sorted({int(r["seed"]) for r in records}),
                              wall_s=sum(r.get("wall_s", 0.0) for r in records),
                              command=args.command or " ".join(shlex.quote(a) for a in sys.argv),
                              run_hardware=sorted({r.get("hardware", "") for r in records}),
                              run_code_versions=sorted({r.get("code_version",
                                                              "") for r in records}),
                              note="wall_s is the sum over runs, which ran concurrently",
                              run_code_note=args.code_note or None)
    path = results.save(args.name, data, prov, folder=args.results_dir)
    print(f"wrote {path}: {sum(r['complete'] for r in rows)}/{len(rows)} points complete")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd in ("worker", "band-group"):
        runtime.configure_threads()  # the runner sets COD_THREADS=1 for its worker processes
    if args.cmd == "worker":
        run_job(json.loads(args.spec), args.out)
        return 0
    if args.cmd == "band-group":
        run_band_group(args.tag, args.norm, [int(s) for s in args.seeds.split(",")], args.out,
                       args.dtype, args.checkpoint_dir)
        return 0
    if args.cmd == "run":
        return _cmd_run(args)
    if args.cmd == "bands":
        return _cmd_bands(args)
    if args.cmd == "collect-bands":
        print(collect_bands(args.runs, args.command or " ".join(shlex.quote(a) for a in sys.argv),
                            results_folder=args.results_dir))
        return 0
    records = [r for folder in args.runs for r in load_records(folder)]
    if args.cmd == "status":
        points = grid(args.grid)
        done = [row["point"]["key"] for row in summarize(points, records) if row["complete"]]
        print(f"complete points ({len(done)}/{len(points)}):", ", ".join(done) or "none")
        for m in missing(points, records):
            print("missing:", m["point"], m["arm"], "seeds", m["seeds"])
        return 0
    return _cmd_collect(args, records)


if __name__ == "__main__":
    raise SystemExit(main())
