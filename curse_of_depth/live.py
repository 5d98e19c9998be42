"""Training live against precomputed seed bands, and the claims notebooks 03 and 04 check.

Explained in notebooks 03 (train it live) and 04 (inside the trained models).

A *band* is one norm's validation curve over several seeds of the same
configuration, trained on a GPU with this package's trainer and stored in the
results pack (``bands_<tag>``). A live run with seed 0 shares its init and its
data order with the band's seed-0 run, so it should land inside the band; the
functions here say whether it does, how the precomputed Pre-LN / LNS gap
reads (sign, size in seed standard deviations, how many paired seeds agree),
and whether trained Pre-LN's residual variance grows with depth more than
LNS's. Each condition is a plain function of numbers, so a unit test can flip
its input and watch the verdict change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .model import CausalLM, apply_rope

# "A beats B" needs |mean paired difference| > GAP_THRESHOLD_SD x the larger seed-sd, as in the GPU probe.
GAP_THRESHOLD_SD = 2.0
BAND_NORMS = ("pre", "lns", "post", "mix")
NORM_NAMES = {"pre": "Pre-LN", "lns": "LNS", "post": "Post-LN", "mix": "Mix-LN"}


# ----------------------------------------------------------------------------- curves and bands


def val_curve(run: dict) -> tuple[np.ndarray, np.ndarray]:
    """(steps, validation losses) of a stored run (``RunResult.to_dict()``) or of any mapping with those keys.

    Accepts ``{"val_steps": [...], "val_loss": [...]}`` and ``{"val": [[step, loss], ...]}``.
    """
    if "val_steps" in run and "val_loss" in run:
        steps, losses = run["val_steps"], run["val_loss"]
    elif "val" in run:
        pairs = run["val"]
        if isinstance(pairs, dict):
            steps, losses = pairs["steps"], pairs["loss"]
        else:
            steps, losses = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        raise ValueError(f"no validation curve in this run (keys: {sorted(run)}); expected val_steps/val_loss or val")
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    if steps.shape != losses.shape or steps.ndim != 1 or steps.size == 0:
        raise ValueError(f"validation curve must be two equal-length 1-D sequences, got {steps.shape} and {losses.shape}")
    return steps, losses


@dataclass
class Band:
    """One norm's validation curve over seeds: ``losses[i, j]`` is seed ``seeds[i]`` at ``steps[j]``."""

    norm: str
    steps: np.ndarray
    losses: np.ndarray
    seeds: list[int]
    diverged: list[bool] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def mean(self) -> np.ndarray:
        return np.nanmean(self.losses, axis=0)

    @property
    def sd(self) -> np.ndarray:
        return np.nanstd(self.losses, axis=0, ddof=1) if self.n > 1 else np.zeros(self.steps.size)

    @property
    def lo(self) -> np.ndarray:
        return np.nanmin(self.losses, axis=0)

    @property
    def hi(self) -> np.ndarray:
        return np.nanmax(self.losses, axis=0)

    @property
    def final(self) -> np.ndarray:
        """Final validation loss of each seed."""
        return self.losses[:, -1]

    def seed_curve(self, seed: int) -> np.ndarray:
        if seed not in self.seeds:
            raise ValueError(f"seed {seed} is not in this band (seeds {self.seeds})")
        return self.losses[self.seeds.index(seed)]


def band_from_runs(norm: str, runs: Sequence[dict]) -> Band:
    """Stack the seeds' validation curves (they must share their evaluation steps).

    A diverged run stops early: its curve must be a prefix of the others' schedule and is padded with NaN
    (the band's statistics ignore NaN).
    """
    if not runs:
        raise ValueError(f"no runs for norm {norm!r}: a band needs at least one seed")
    curves = [val_curve(r) for r in runs]
    steps = max((c[0] for c in curves), key=len)
    rows = []
    for i, ((s, v), r) in enumerate(zip(curves, runs)):
        if s.shape == steps.shape and np.allclose(s, steps):
            rows.append(v)
        elif r.get("diverged") and s.size < steps.size and np.allclose(s, steps[:s.size]):
            rows.append(np.concatenate([v, np.full(steps.size - s.size, np.nan)]))
        else:
            raise ValueError(f"seed #{i} of {norm!r} was evaluated at other steps; bands need one evaluation schedule")
    seeds = [_seed_of(r, i) for i, r in enumerate(runs)]
    diverged = [bool(r.get("diverged", False)) for r in runs]
    return Band(norm=norm, steps=steps, losses=np.stack(rows), seeds=seeds, diverged=diverged)


def _seed_of(run: dict, default: int) -> int:
    if "seed" in run:
        return int(run["seed"])
    for key in ("train_config", "train", "config"):
        if isinstance(run.get(key), dict) and "seed" in run[key]:
            return int(run[key]["seed"])
    return default


def bands_from_data(data: dict) -> dict[str, Band]:
    """All bands of a stored ``bands_<tag>`` result's ``data`` (``{"runs": {norm: [run, ...]}}``)."""
    if "runs" not in data:
        raise ValueError(f"not a bands result: no 'runs' key (keys: {sorted(data)})")
    return {norm: band_from_runs(norm, runs) for norm, runs in data["runs"].items() if runs}


def load_bands(tag: str) -> tuple[dict[str, Band], dict]:
    """The bands of ``bands_<tag>`` from the results pack, and the whole stored record (provenance, configs)."""
    from . import results

    record = results.load(f"bands_{tag}")
    return bands_from_data(record["data"]), record


def config_label(record: dict) -> str:
    """A short name of a bands record's configuration, e.g. "width 64, 24 blocks, 80-step schedule"."""
    data = record.get("data", record)
    m, t = data["model"], data["train"]
    return f"width {m['d_model']}, {m['n_layers']} blocks, {t['max_steps']}-step schedule"


def divergence_statement(label: str, band: Band) -> str:
    """How many seeds of a band diverged (a verdict line: counts only)."""
    name = NORM_NAMES.get(band.norm, band.norm)
    k = sum(band.diverged)
    if k == 0:
        return f"{label}: no {name} seed diverged ({band.n} of {band.n} trained to the end)"
    return f"{label}: {k} of {band.n} {name} seeds diverged"


# ----------------------------------------------------------------------------- the paired gap


@dataclass
class PairedGap:
    """``b - a`` final validation loss, paired by seed (same init and data order)."""

    a: str
    b: str
    seeds: list[int]
    diffs: np.ndarray
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    threshold_sd: float = GAP_THRESHOLD_SD

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def mean(self) -> float:
        return float(self.diffs.mean())

    @property
    def sd(self) -> float:
        return float(self.diffs.std(ddof=1)) if self.n > 1 else 0.0

    @property
    def in_seed_sd(self) -> float:
        """|mean difference| in units of the larger of the two seed standard deviations."""
        scale = max(self.sd_a, self.sd_b)
        return math.inf if scale == 0 else abs(self.mean) / scale

    @property
    def b_better(self) -> int:
        """Seeds in which ``b`` reached the lower loss."""
        return int((self.diffs < 0).sum())

    @property
    def winner(self) -> str | None:
        """``a`` or ``b`` when the gap exceeds ``threshold_sd`` seed-sd, ``None`` for a tie."""
        if self.n < 2 or self.in_seed_sd <= self.threshold_sd:
            return None
        return self.b if self.mean < 0 else self.a


def paired_gap(band_a: Band, band_b: Band, threshold_sd: float = GAP_THRESHOLD_SD) -> PairedGap:
    """The gap ``b - a`` at the end of training, over the seeds both bands share."""
    seeds = [s for s in band_a.seeds if s in band_b.seeds
             and np.isfinite(band_a.seed_curve(s)[-1]) and np.isfinite(band_b.seed_curve(s)[-1])]
    if not seeds:
        raise ValueError(f"bands {band_a.norm!r} and {band_b.norm!r} share no seed that trained to the end; "
                         "a paired gap needs common seeds")
    fa = np.array([band_a.seed_curve(s)[-1] for s in seeds])
    fb = np.array([band_b.seed_curve(s)[-1] for s in seeds])
    sd = (lambda x: float(x.std(ddof=1)) if x.size > 1 else 0.0)
    return PairedGap(band_a.norm, band_b.norm, seeds, fb - fa, float(fa.mean()), float(fb.mean()), sd(fa), sd(fb),
                     threshold_sd)


def gap_statement(label: str, gap: PairedGap) -> str:
    """The verdict line for a precomputed gap: which way it went, whether it clears the seed noise.

    Only counts appear (seeds, seeds agreeing), never a float, so the line is the same wherever it is printed.
    """
    a, b = NORM_NAMES.get(gap.a, gap.a), NORM_NAMES.get(gap.b, gap.b)
    agree = f"{gap.b_better}/{gap.n} paired seeds favour {b}"
    if gap.winner is None:
        lead = b if gap.mean < 0 else a
        return (f"{label}: {a} vs {b} is a tie within {gap.threshold_sd:g} seed-sd "
                f"({lead} ahead on average; {agree})")
    loser = a if gap.winner == gap.b else b
    return (f"{label}: {NORM_NAMES.get(gap.winner, gap.winner)} reaches a lower validation loss than {loser}, "
            f"by more than {gap.threshold_sd:g} seed-sd ({agree})")


# ----------------------------------------------------------------------------- where a live run sits


@dataclass
class BandPosition:
    """Where a live validation curve sits relative to a band (compared at the band's steps).

    The band's edges are its best and worst seed, widened on each side by ``margin`` (see ``band_position``).
    """

    norm: str
    steps: np.ndarray
    live: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    margin: np.ndarray
    matched: np.ndarray | None  # the band's run with the live run's seed, if stored

    @property
    def inside(self) -> np.ndarray:
        return (self.live >= self.lo - self.margin) & (self.live <= self.hi + self.margin)

    @property
    def inside_final(self) -> bool:
        return bool(self.inside[-1])

    @property
    def fraction_inside(self) -> float:
        return float(self.inside.mean())

    @property
    def side(self) -> str:
        """'inside', 'above' (worse than every seed) or 'below' (better than every seed), at the end."""
        if self.inside_final:
            return "inside"
        return "above" if self.live[-1] > self.hi[-1] else "below"


def band_position(steps: Sequence[float], losses: Sequence[float], band: Band, seed: int | None = None,
                  widen_sd: float = 1.0, tolerance: float = 0.0, at: str = "band") -> BandPosition:
    """Compare a live curve with ``band`` at every step the band was evaluated at (``at="band"``), or only at the
    live run's own evaluation steps (``at="live"``: a live run that evaluates every 20 steps against a band stored
    every 10; each live step must be a band step, and the band's last step must be among them).

    The edges are the best and worst seed, widened by ``widen_sd`` seed standard deviations plus ``tolerance``
    nats on each side. Why widen: the live run repeats one of the band's seeds on other hardware (fp32 CPU vs
    bf16 GPU), so it differs from that seed's stored run by rounding; when that seed is the band's best or worst,
    a bare min-max test would call a faithful repeat "outside". The live run must have been evaluated at the
    band's steps (same schedule and ``eval_every``). Notebook 03.
    """
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    if steps.shape != losses.shape or steps.size == 0:
        raise ValueError("live steps and losses must be non-empty sequences of equal length")
    if tolerance < 0 or widen_sd < 0:
        raise ValueError(f"tolerance and widen_sd must be >= 0, got {tolerance}, {widen_sd}")
    if at not in ("band", "live"):
        raise ValueError(f"at must be 'band' or 'live', got {at!r}")
    index = {float(s): i for i, s in enumerate(steps)}
    band_index = {float(s): j for j, s in enumerate(band.steps)}
    if at == "band":
        missing = [int(s) for s in band.steps if float(s) not in index]
        if missing:
            raise ValueError(f"the live run has no evaluation at steps {missing[:5]} of the band; train it with the "
                             "band's configuration (same steps and eval_every), or compare at='live'")
        cols = list(range(band.steps.size))
    else:
        foreign = [int(s) for s in steps if float(s) not in band_index]
        if foreign or float(band.steps[-1]) not in index:
            raise ValueError(f"with at='live' every live step must be a band step and the band's last step "
                             f"{int(band.steps[-1])} must be one (not band steps: {foreign[:5]}); evaluate the live run "
                             "every k x the band's eval_every (live_configs(..., eval_every=...))")
        cols = sorted(band_index[float(s)] for s in steps)
    live = np.array([losses[index[float(band.steps[j])]] for j in cols])
    matched = band.seed_curve(seed)[cols] if seed is not None and seed in band.seeds else None
    margin = tolerance + widen_sd * np.nan_to_num(band.sd[cols])
    return BandPosition(band.norm, band.steps[cols].copy(), live, band.lo[cols].copy(), band.hi[cols].copy(), margin,
                        matched)


def band_statement(pos: BandPosition) -> str:
    """The verdict line for a live run against its band (no numbers: identical in every run mode)."""
    name = NORM_NAMES.get(pos.norm, pos.norm)
    where = {"inside": "inside", "above": "above (worse than)", "below": "below (better than)"}[pos.side]
    return (f"live {name} run ends {where} the precomputed seed band of its configuration "
            "(best to worst seed, widened by one seed-sd)")


# ----------------------------------------------------------------------------- variance growth with depth


def variance_growth(variance_per_block: Sequence[float]) -> float:
    """Residual-stream variance after the deepest block divided by that after block 1.

    ``variance_per_block[l-1]`` is the variance after block ``l`` (leave the embedding out).
    """
    v = np.asarray(variance_per_block, dtype=float)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"need the variance after at least two blocks, got shape {v.shape}")
    if not np.all(np.isfinite(v)) or v[0] <= 0:
        raise ValueError("variances must be finite and the first one positive (a diverged model has no growth ratio)")
    return float(v[-1] / v[0])


def grows_more(variance_a: Sequence[float], variance_b: Sequence[float]) -> bool:
    """True when ``a``'s variance grows from block 1 to the last block by a larger factor than ``b``'s."""
    return variance_growth(variance_a) > variance_growth(variance_b)


# ----------------------------------------------------------------------------- near-identity blocks


def count_cheap_blocks(skip_delta: Sequence[float], threshold: float = 0.005) -> int:
    """How many blocks can each be skipped for less than ``threshold`` nats of validation loss."""
    return int((np.asarray(skip_delta, dtype=float) < threshold).sum())


def deep_half_share(skip_delta: Sequence[float]) -> float:
    """The deep half's share of the summed skip-one-block loss increase, block 1 left out.

    Near 0: the deep blocks are near-identity; near or above 0.5: they matter at least as much as the shallow ones.
    """
    d = np.clip(np.asarray(skip_delta, dtype=float)[1:], 0.0, None)
    if d.size < 2 or d.sum() == 0:
        raise ValueError("need skip-one-block deltas for at least three blocks, not all zero")
    half = d.size // 2
    return float(d[half:].sum() / d.sum())


def lazy_half_statement(label: str, skip_pre: Sequence[float], skip_lns: Sequence[float]) -> str:
    """Which model's deep half is the lazier one, as measured (a verdict line: no floats). Notebook 04.

    Compares ``deep_half_share`` of the two skip-one-block profiles: the model whose deep half carries the smaller
    share of the loss increase is the one whose deep blocks are closer to the identity.
    """
    pre, lns = deep_half_share(skip_pre), deep_half_share(skip_lns)
    lazier, other = ("LNS", "Pre-LN") if lns < pre else ("Pre-LN", "LNS")
    return (f"{label}: the deep half of the blocks carries a smaller share of the skip-one-block loss increase "
            f"in {lazier} than in {other} (block 1 aside)")


# ----------------------------------------------------------------------------- why LNS leaves the plateau first


@torch.no_grad()
def attention_logit_std(model: CausalLM, idx: torch.Tensor) -> list[float]:
    """Standard deviation of each block's pre-softmax attention logits q.k/sqrt(d_head) on ``idx``.

    Under LNS the attention input of block l is norm(x)/sqrt(l), and q and k are both linear in it,
    so the logits shrink by 1/l: deep blocks attend almost uniformly until their gains grow.
    Post-LN blocks (which read the raw stream) are measured on that stream. Notebook 03.
    """
    model.eval()
    out = model(idx, output_hidden_states=True)
    stds = []
    causal = torch.ones(idx.shape[-1], idx.shape[-1], dtype=torch.bool).tril()
    for block, x in zip(model.blocks, out.hidden_states[:-1]):
        h = x if block.post else block.ln_1(x) * block.scale
        B, T, _ = h.shape
        attn = block.attn
        q, k, _ = attn.qkv(h).view(B, T, 3, attn.n_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = model.rope[0][:T], model.rope[1][:T]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(attn.head_dim)
        stds.append(float(logits[..., causal].std()))
    return stds


# ----------------------------------------------------------------------------- snapshots during training


class Snapshots:
    """A ``train(..., callback=...)`` callback that records a per-block measurement at chosen steps.

    ``measure(model) -> list[float]`` (e.g. residual variance per block on a fixed batch) runs at each step in
    ``at_steps``; ``record(step, model)`` takes one by hand (use it at step 0, before training).
    Notebook 03 uses it to watch the variance profile grow during training.
    """

    def __init__(self, measure, at_steps: Iterable[int]):
        self.measure = measure
        self.at_steps = sorted({int(s) for s in at_steps})
        if any(s < 0 for s in self.at_steps):
            raise ValueError("snapshot steps must be >= 0")
        self.values: dict[int, list[float]] = {}

    def record(self, step: int, model) -> None:
        was_training = model.training
        try:
            self.values[int(step)] = [float(v) for v in self.measure(model)]
        finally:
            model.train(was_training)

    def __call__(self, step: int, model, result=None) -> None:
        if int(step) in self.at_steps and int(step) not in self.values:
            self.record(step, model)

    def as_dict(self) -> dict[int, list[float]]:
        return dict(sorted(self.values.items()))


def chain(*callbacks):
    """One ``train`` callback that calls each of ``callbacks`` in turn; stops the run if any asks to."""
    fns = [cb for cb in callbacks if cb is not None]

    def run_all(step, model, result):
        stop = False
        for cb in fns:
            stop = bool(cb(step, model, result)) or stop
        return stop

    return run_all


def variance_after_blocks(idx: torch.Tensor):
    """A ``Snapshots`` measure: the residual-stream variance after each block (embedding left out) on ``idx``."""
    from . import analysis

    def measure(model) -> list[float]:
        return analysis.variance_per_layer(analysis.residual_stream(model, idx)).tolist()[1:]

    return measure


def embedding_share(variance_with_embedding: Sequence[float]) -> float:
    """The embedding's variance as a fraction of the final residual stream's (``variance[0] / variance[-1]``).

    At initialization a deep Pre-LN stack's output is almost all random-block noise (a tiny share);
    LNS damps the deep blocks, so the tokens' own signal keeps a larger share. Notebook 03.
    """
    v = np.asarray(variance_with_embedding, dtype=float)
    if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)) or v[-1] <= 0:
        raise ValueError("need finite variances of the embedding and of at least one block, the last positive")
    return float(v[0] / v[-1])


def block_diagnostics(model: CausalLM, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """The four per-block diagnostics of notebook 04 on one batch, as plain lists (block 1 first).

    ``variance`` after each block, ``angular`` distance in -> out, ``skip_delta`` (loss increase when that block
    alone is skipped, reusing the inputs of the full pass), ``grad_norm`` of the block's parameters; plus
    ``embedding_variance`` and ``base_loss``. Built on ``curse_of_depth.analysis.layer_profile``.
    """
    from . import analysis

    was_training = model.training
    model.eval()
    try:
        prof = analysis.layer_profile(model, x, y, removal=True, grads=True, skip_first=False)
    finally:
        model.train(was_training)
    return {"variance": prof.variance[1:], "embedding_variance": prof.variance[0], "angular": prof.angular,
            "skip_delta": prof.removal.delta, "grad_norm": prof.grad_norms, "base_loss": prof.removal.base_loss}


class LiveBandPlot:
    """A ``train`` callback that redraws the precomputed bands with every live validation curve so far.

    Pass one instance to several runs (``norm`` is read from each run's config): they share one figure, updated
    in place in a notebook. Without a notebook front end it draws nothing. Notebook 03.
    """

    def __init__(self, bands: dict[str, Band], title: str = "", norms: Sequence[str] | None = None):
        from .train import LivePlot

        self.bands, self.title, self.norms = bands, title, list(norms or bands)
        self.curves: dict[str, tuple[list[int], list[float]]] = {}
        self.handle = self.fig = None
        if LivePlot.available():
            import matplotlib.pyplot as plt
            from IPython.display import display

            from . import plots

            self.fig, self.ax = plots.subplots()
            plt.close(self.fig)  # detached from pyplot: only the handle shows it, no extra copy at the end of a cell
            self._draw()
            self.handle = display(self.fig, display_id=True)

    def _draw(self) -> None:
        from . import plots

        ax = self.ax
        ax.clear()
        plots.draw_bands(ax, self.bands, self.norms)
        for norm, (steps, losses) in self.curves.items():
            ax.plot(steps, losses, "o-", color=plots.NORM_COLORS.get(norm, "k"), lw=2.2, ms=4,
                    label=f"{plots.NORM_LABELS.get(norm, norm)}: live")
        last = max(float(b.steps[-1]) for b in self.bands.values())
        ax.set(xlim=(0, last), xlabel="training step", ylabel="validation loss (nats/char)", title=self.title)
        ax.legend(fontsize="small", loc="upper right")

    def __call__(self, step, model, result) -> None:
        self.curves[result.model_config.norm] = (list(result.val_steps), list(result.val_loss))
        if self.handle is not None:
            self._draw()
            self.handle.update(self.fig)

    def show_here(self) -> None:
        """Show the figure again in the current cell's output and update that copy from now on."""
        if self.fig is not None:
            from IPython.display import display

            self._draw()
            self.handle = display(self.fig, display_id=True)

    def close(self) -> None:
        """Stop updating; the last image stays in the output."""
        self.handle = None


class LiveSession:
    """Notebook 03's live runs: each norm trained with the band's configuration, over one shared live plot.

    ``run(norm)`` trains one norm now (``train_live``: never loaded, left in the cache for notebook 04),
    records the residual variance after every block at each validation point, and redraws the plot; call it
    in separate cells so no cell trains for long. ``runs`` and ``snapshots`` hold the results by norm.
    """

    def __init__(self, bands: dict[str, Band], configs: dict, corpus, probe_idx: torch.Tensor, title: str = ""):
        if not configs:
            raise ValueError("no configurations to train: pass live_configs(...) for at least one norm")
        self.configs, self.corpus, self.probe_idx = configs, corpus, probe_idx
        self.board = LiveBandPlot(bands, title=title, norms=list(configs))
        self.runs: dict = {}
        self.snapshots: dict[str, Snapshots] = {}

    def run(self, norm: str, progress: bool = True):
        if norm not in self.configs:
            raise ValueError(f"no configuration for norm {norm!r}; this session trains {sorted(self.configs)}")
        model_cfg, train_cfg = self.configs[norm]
        at = [*range(0, train_cfg.max_steps, train_cfg.eval_every), train_cfg.max_steps]
        snaps = Snapshots(variance_after_blocks(self.probe_idx), at_steps=at)
        if self.runs:  # a later cell: draw the shared plot again under this cell
            self.board.show_here()
        result = train_live(model_cfg, train_cfg, self.corpus, callback=chain(snaps, self.board), progress=progress)
        self.runs[norm], self.snapshots[norm] = result, snaps
        return result

    def curves(self) -> dict[str, tuple[list[int], list[float]]]:
        return {norm: (r.val_steps, r.val_loss) for norm, r in self.runs.items()}


def train_live(model_cfg, train_cfg, corpus=None, callback=None, progress: bool = True):
    """Train now (never load), and leave the run in the ``train_or_load`` cache so notebook 04 reuses it.

    Notebook 03 trains in front of the room even when an earlier run is cached; notebook 04 then loads
    exactly this run with ``train_or_load(model_cfg, train_cfg)`` instead of training again.
    """
    import shutil

    from .data import load_corpus
    from .train import run_key, runs_dir, train_or_load

    corpus = corpus if corpus is not None else load_corpus(train_cfg.corpus)
    shutil.rmtree(runs_dir() / run_key(model_cfg, train_cfg, corpus.fingerprint), ignore_errors=True)
    return train_or_load(model_cfg, train_cfg, corpus=corpus, progress=progress, callback=callback)


def live_configs(record: dict, vocab_size: int, norms: Sequence[str], seed: int = 0, eval_every: int | None = None):
    """The (ModelConfig, TrainConfig) of a live run for each norm, copied from a stored band's configs.

    Device and precision are left to this machine (fp32 on CPU), everything else (shape, schedule, seed,
    evaluation batches) is the band's, so the live curve is comparable point by point. ``eval_every``, a multiple
    of the band's, evaluates the live run at every k-th band point only (validation is ~35% of a live run's CPU
    time at 9 points); compare it with ``band_position(..., at="live")``. Notebooks 03 and 04 must pass the same
    value, or notebook 04 will not find notebook 03's runs in the cache.
    """
    from .model import ModelConfig
    from .train import TrainConfig

    data = record.get("data", record)
    if "model" not in data or "train" not in data:
        raise ValueError("a bands record needs 'model' and 'train' configs; regenerate it with the package's trainer")
    model = {k: v for k, v in data["model"].items() if k != "norm"}
    if model.get("vocab_size", vocab_size) != vocab_size:
        raise ValueError(f"the band was trained with vocab_size={model['vocab_size']} but this corpus has {vocab_size}")
    train = {**data["train"], "device": "auto", "dtype": "auto", "seed": seed}
    if eval_every is not None:
        band_every = int(train.get("eval_every", 50))
        if not isinstance(eval_every, int) or eval_every < 1 or eval_every % band_every:
            raise ValueError(f"eval_every must be a positive multiple of the band's eval_every={band_every} (so every "
                             f"live point is a band point), got {eval_every!r}")
        train["eval_every"] = eval_every
    tc = TrainConfig.from_dict(train)
    return {norm: (ModelConfig(**{**model, "norm": norm}), tc) for norm in norms}
