"""Training live in the notebook against the precomputed seed bands (notebooks 03 and 04).

``LiveSession`` trains each norm with its band's configuration over one shared, redrawn plot
(``LivePlot``) and records the residual variance after every block (``Snapshots``); ``train_live``
trains now and leaves the run in the train-or-load cache for notebook 04. The bands, gaps and
verdict lines themselves are ``curse_of_depth.stats``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import analysis
from .. import train as trainer
from .._files import atomic_write_json, config_key, data_dir, sha256_file
from ..data import load_corpus
from ..model import NORM_LABELS, ModelConfig
from ..stats import Band, bands_from_data
from ..train import RunResult, TrainConfig
from . import plots, results, runtime

RUN_FORMAT = 1  # bump when a cached run would no longer mean the same thing (train-or-load key)


def load_bands(tag: str) -> tuple[dict[str, Band], dict]:
    """The bands of ``bands_<tag>`` from the results pack, and the whole stored record (provenance,
    configs)."""
    record = results.load(f"bands_{tag}")
    return bands_from_data(record["data"]), record


def config_label(record: dict) -> str:
    """A short name of a bands record's configuration, e.g. "width 64, 24 blocks, 80-step schedule".
    """
    data = record.get("data", record)
    m, t = data["model"], data["train"]
    return f"width {m['d_model']}, {m['n_layers']} blocks, {t['max_steps']}-step schedule"


def lr_text(lr: float) -> str:
    """A learning rate as the notebooks write it: 3e-3, 1e-2, 0.1."""
    return f"{lr:.0e}".replace("e-0", "e-") if lr < 0.05 else f"{lr:g}"


def recipe_label(record: dict, short: bool = False) -> str:
    """The optimizer recipe of a bands record, e.g. "AdamW, lr 3e-3, β2 0.95, weight decay 0.1,
    clipping at 1.0" (``short``: "AdamW, lr 3e-3"): every verdict holds at this recipe and learning
    rate (notebook 03)."""
    t = record.get("data", record)["train"]
    head = f"AdamW, lr {lr_text(t['lr'])}"
    if short:
        return head
    clip = f"clipping at {t['grad_clip']:.1f}" if t.get("grad_clip") else "no clipping"
    return f"{head}, β2 {t['betas'][1]:g}, weight decay {t['weight_decay']:g}, {clip}"


# ---------------------------------------------------------------- where a live run sits in its band


@dataclass
class BandPosition:
    """Where a live validation curve sits relative to a band (compared at the band's steps).

    The band's edges are its best and worst seed, widened on each side by ``margin`` (see
    ``band_position``).
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
        """'inside', 'above' (worse than every seed) or 'below' (better than every seed), at the
        end."""
        if self.inside_final:
            return "inside"
        return "above" if self.live[-1] > self.hi[-1] else "below"


def band_position(steps: Sequence[float], losses: Sequence[float], band: Band,
                  seed: int | None = None, widen_sd: float = 1.0, tolerance: float = 0.0,
                  at: str = "band") -> BandPosition:
    """Compare a live curve with ``band`` at every step the band was evaluated at (``at="band"``),
    or only at the live run's own evaluation steps (``at="live"``: a live run that evaluates every
    20 steps against a band stored every 10; each live step must be a band step, and the band's last
    step must be among them).

    The edges are the best and worst seed, widened by ``widen_sd`` seed standard deviations plus
    ``tolerance`` nats on each side. Why widen: the live run repeats one of the band's seeds on
    other hardware (fp32 CPU vs bf16 GPU), so it differs from that seed's stored run by rounding;
    when that seed is the band's best or worst, a bare min-max test would call a faithful repeat
    "outside". The live run must have been evaluated at the band's steps (same schedule and
    ``eval_every``). Notebook 03.
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
            raise ValueError(f"the live run has no evaluation at steps {missing[:5]} of the band; "
                             "train it with the band's configuration (same steps and eval_every), "
                             "or compare at='live'")
        cols = list(range(band.steps.size))
    else:
        foreign = [int(s) for s in steps if float(s) not in band_index]
        if foreign or float(band.steps[-1]) not in index:
            raise ValueError("with at='live' every live step must be a band step and the band's "
                             f"last step {int(band.steps[-1])} must be one (not band steps: "
                             f"{foreign[:5]}); evaluate the live run every k x the band's "
                             "eval_every (live_configs(..., eval_every=...))")
        cols = sorted(band_index[float(s)] for s in steps)
    live = np.array([losses[index[float(band.steps[j])]] for j in cols])
    matched = band.seed_curve(seed)[cols] if seed is not None and seed in band.seeds else None
    margin = tolerance + widen_sd * np.nan_to_num(band.sd[cols])
    return BandPosition(band.norm, band.steps[cols].copy(), live, band.lo[cols].copy(),
                        band.hi[cols].copy(), margin, matched)


def band_statement(pos: BandPosition) -> str:
    """The verdict line for a live run against its band (no numbers: identical in every run mode).
    """
    name = NORM_LABELS.get(pos.norm, pos.norm)
    where = {"inside": "inside", "above": "above (worse than)",
             "below": "below (better than)"}[pos.side]
    return (f"live {name} run ends {where} the precomputed seed band of its configuration "
            "(best to worst seed, widened by one seed-sd)")


# ------------------------------------------------------------------------ snapshots during training


class Snapshots:
    """A ``train(..., callback=...)`` callback that records a per-block measurement at chosen steps.

    ``measure(model) -> list[float]`` (e.g. residual variance per block on a fixed batch) runs at
    each step in ``at_steps``; ``record(step, model)`` takes one by hand (use it at step 0, before
    training). Notebook 03 uses it to watch the variance profile grow during training.
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
    """One ``train`` callback that calls each of ``callbacks`` in turn; stops the run if any asks
    to."""
    fns = [cb for cb in callbacks if cb is not None]

    def run_all(step, model, result):
        stop = False
        for cb in fns:
            stop = bool(cb(step, model, result)) or stop
        return stop

    return run_all


def variance_after_blocks(idx: torch.Tensor):
    """A ``Snapshots`` measure: the per-token residual variance after each block (embedding left
    out, every position counted, as in the results pack's ``training_growth``) on ``idx``."""
    def measure(model) -> list[float]:
        hs = analysis.residual_stream(model, idx)
        return analysis.residual_variance_per_token(hs, skip_first=False).tolist()[1:]

    return measure



# ---------------------------------------------------------------------- the bands and the live plot


def draw_bands(ax, bands: dict[str, Band], norms: Sequence[str] | None = None,
               alpha: float = 0.18) -> None:
    """Shade each norm's seed band (best to worst seed) and draw its mean dashed. Notebook 03."""
    for norm in [n for n in norms or bands if n in bands]:
        b, color = bands[norm], plots.NORM_COLORS.get(norm, "gray")
        ax.fill_between(b.steps, b.lo, b.hi, color=color, alpha=alpha, lw=0)
        ax.plot(b.steps, b.mean, color=color, lw=1.2, ls="-." if norm == "mix" else "--",
                label=f"{NORM_LABELS.get(norm, norm)}: {b.n} seeds")  # Mix-LN dash-dot: it can sit on Post-LN


def plot_bands(bands_by_panel: dict, norms=None, live: dict | None = None,
               title: str | None = None):
    """One panel per configuration (``{title: {norm: Band}}``); ``live`` maps a panel title to
    ``{norm: (steps, losses)}`` curves drawn solid on top. Notebook 03."""
    fig, axes = plots.subplots(1, len(bands_by_panel), squeeze=False)
    for ax, (panel, bands) in zip(axes[0], bands_by_panel.items()):
        draw_bands(ax, bands, norms)
        for norm, (steps, losses) in (live or {}).get(panel, {}).items():
            ax.plot(steps, losses, color=plots.NORM_COLORS.get(norm, "k"), lw=0.8, marker="o", ms=6,
                    label=f"{NORM_LABELS.get(norm, norm)}: your live run (dots: validations)")
        ax.axhline(plots.UNIGRAM_NATS, color="gray", lw=0.8, ls=":")
        ax.text(ax.get_xlim()[1], plots.UNIGRAM_NATS, " unigram", va="center", color="gray",
                fontsize="small")
        ax.set(title=panel, xlabel="training step", ylabel="validation loss (nats/char)")
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


class LivePlot:
    """A ``train`` callback that redraws every run's validation curve so far, over ``bands`` when
    given.

    Pass one instance to several runs (each run's norm is read from its config): they share one
    figure, updated in place while a person watches (``runtime.frontend_attached``); otherwise it
    draws nothing and the notebook draws the finished figure once. Notebook 03.
    """

    def __init__(self, bands: dict[str, Band] | None = None, title: str = "",
                 norms: Sequence[str] | None = None):
        self.bands, self.title = bands or {}, title
        self.norms = list(norms or self.bands)
        self.curves: dict[str, tuple[list[int], list[float]]] = {}
        self.last_step = max((float(b.steps[-1]) for b in self.bands.values()), default=0.0)
        self.handle = self.fig = None
        if runtime.frontend_attached():
            import matplotlib.pyplot as plt

            self.fig, self.ax = plots.subplots()
            # detached from pyplot: only the handle shows it, no extra copy at the end of a cell
            plt.close(self.fig)
            self.show_here()

    def _draw(self) -> None:
        ax = self.ax
        ax.clear()
        draw_bands(ax, self.bands, self.norms)
        for norm, (steps, losses) in self.curves.items():
            ax.plot(steps, losses, "o-", color=plots.NORM_COLORS.get(norm, "k"), lw=0.8, ms=6,
                    label=f"{NORM_LABELS.get(norm, norm)}: live")
        ax.set(xlim=(0, self.last_step or None), xlabel="training step", ylabel="validation loss "
                                                                                "(nats/char)",
               title=self.title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", loc="upper right")

    def __call__(self, step, model, result) -> None:
        self.curves[result.model_config.norm] = (list(result.val_steps), list(result.val_loss))
        self.last_step = max(self.last_step, result.train_config.max_steps if not self.bands else 0)
        if self.handle is not None:
            self._draw()
            self.handle.update(self.fig)

    def show_here(self) -> None:
        """Show the figure in the current cell's output and update that copy from now on."""
        if self.fig is not None:
            from IPython.display import display

            self._draw()
            self.handle = display(self.fig, display_id=True)

    def close(self) -> None:
        """Stop updating; the last image stays in the output."""
        self.handle = None


class LiveSession:
    """Notebook 03's live runs: each norm trained with the band's configuration, over one shared
    live plot.

    ``run(norm)`` trains one norm now (``train_live``: never loaded, left in the cache for notebook
    04), records the residual variance after every block at each validation point, and redraws the
    plot; call it in separate cells so no cell trains for long. ``runs`` and ``snapshots`` hold the
    results by norm.
    """

    def __init__(self, bands: dict[str, Band], configs: dict, corpus, probe_idx: torch.Tensor,
                 title: str = ""):
        if not configs:
            raise ValueError("no configurations to train: pass live_configs(...) for at least one "
                             "norm")
        self.configs, self.corpus, self.probe_idx = configs, corpus, probe_idx
        self.board = LivePlot(bands, title=title, norms=list(configs))
        self.runs: dict = {}
        self.snapshots: dict[str, Snapshots] = {}

    def run(self, norm: str, progress: bool = True):
        if norm not in self.configs:
            raise ValueError(f"no configuration for norm {norm!r}; this session trains "
                             f"{sorted(self.configs)}")
        model_cfg, train_cfg = self.configs[norm]
        at = [*range(0, train_cfg.max_steps, train_cfg.eval_every), train_cfg.max_steps]
        snaps = Snapshots(variance_after_blocks(self.probe_idx), at_steps=at)
        if self.runs:  # a later cell: draw the shared plot again under this cell
            self.board.show_here()
        result = train_live(model_cfg, train_cfg, self.corpus, callback=chain(snaps, self.board),
                            progress=progress)
        self.runs[norm], self.snapshots[norm] = result, snaps
        return result

    def curves(self) -> dict[str, tuple[list[int], list[float]]]:
        return {norm: (r.val_steps, r.val_loss) for norm, r in self.runs.items()}


# ----------------------------------------------------------------------------- train or load


def run_key(model_cfg: ModelConfig, train_cfg: TrainConfig, corpus_fingerprint: str) -> str:
    """The train-or-load cache key: both configs, the corpus and the code format. Notebook 03."""
    return config_key({"model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
                              "corpus": corpus_fingerprint,
                       "format": RUN_FORMAT})


def runs_dir() -> Path:
    """Where ``train_or_load`` keeps finished runs: ``<data_dir>/runs``."""
    return data_dir() / "runs"


def train_or_load(model_cfg: ModelConfig, train_cfg: TrainConfig, cache: bool = True, corpus=None,
                  progress: bool = True, callback=None,
                  folder: str | os.PathLike | None = None) -> RunResult:
    """The stored run of these configs, corpus and code format when it is intact; else train now.

    Interrupted runs are returned but not cached. ``result.from_cache`` says which happened.
    Notebooks 03 and 04.
    """
    corpus = corpus if corpus is not None else load_corpus(train_cfg.corpus)
    trainer._check_inputs(model_cfg, train_cfg, corpus)
    key = run_key(model_cfg, train_cfg, corpus.fingerprint)
    run_folder = Path(folder) if folder else runs_dir() / key
    ckpt, meta_path = run_folder / "model.safetensors", run_folder / "run.json"
    if cache and meta_path.exists() and ckpt.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("checkpoint_sha256") == sha256_file(ckpt):
                model, _ = trainer.load_checkpoint(ckpt)
                result = RunResult.from_dict(meta["result"])
                if result.model_config == model_cfg and result.train_config == train_cfg:
                    result.model, result.from_cache = model.train(), True
                    return result
        except (ValueError, KeyError, OSError, json.JSONDecodeError, RuntimeError) as exc:
            print(f"cached run in {run_folder} is unreadable ({exc}); training again",
                  file=sys.stderr)
    result = trainer.train(model_cfg, train_cfg, corpus=corpus, progress=progress,
                           callback=callback)
    if cache and not result.interrupted:
        model = result.model.cpu()
        trainer.save_checkpoint(model, ckpt, result)
        meta = {"checkpoint_sha256": sha256_file(ckpt), "result": result.to_dict()}
        atomic_write_json(meta_path, meta)
    return result


def train_live(model_cfg, train_cfg, corpus=None, callback=None, progress: bool = True):
    """Train now (never load), and leave the run in the ``train_or_load`` cache for notebook 04.

    Notebook 03 trains in front of the room even when an earlier run is cached; notebook 04 then
    loads exactly this run with ``train_or_load(model_cfg, train_cfg)`` instead of training again.
    """
    corpus = corpus if corpus is not None else load_corpus(train_cfg.corpus)
    shutil.rmtree(runs_dir() / run_key(model_cfg, train_cfg, corpus.fingerprint),
                  ignore_errors=True)
    return train_or_load(model_cfg, train_cfg, corpus=corpus, progress=progress, callback=callback)


def live_configs(record: dict, vocab_size: int, norms: Sequence[str], seed: int = 0,
                 eval_every: int | None = None):
    """The (ModelConfig, TrainConfig) of a live run for each norm, copied from a stored band's
    configs.

    Device and precision are left to this machine (fp32 on CPU), everything else (shape, schedule,
    seed, evaluation batches) is the band's, so the live curve is comparable point by point.
    ``eval_every``, a multiple of the band's, evaluates the live run at every k-th band point only
    (validation is ~35% of a live run's CPU time at 9 points); compare it with ``band_position(...,
    at="live")``. Notebooks 03 and 04 must pass the same value, or notebook 04 will not find
    notebook 03's runs in the cache.
    """
    data = record.get("data", record)
    if "model" not in data or "train" not in data:
        raise ValueError("a bands record needs 'model' and 'train' configs; regenerate it with the "
                         "package's trainer")
    model = {k: v for k, v in data["model"].items() if k != "norm"}
    if model.get("vocab_size", vocab_size) != vocab_size:
        raise ValueError(f"the band was trained with vocab_size={model['vocab_size']} but this "
                         f"corpus has {vocab_size}")
    train = {**data["train"], "device": "auto", "dtype": "auto", "seed": seed}
    if eval_every is not None:
        band_every = int(train.get("eval_every", 50))
        if not isinstance(eval_every, int) or eval_every < 1 or eval_every % band_every:
            raise ValueError("eval_every must be a positive multiple of the band's "
                             f"eval_every={band_every} (so every live point is a band point), got "
                             f"{eval_every!r}")
        train["eval_every"] = eval_every
    tc = TrainConfig.from_dict(train)
    return {norm: (ModelConfig(**{**model, "norm": norm}), tc) for norm in norms}
