"""Training live in the notebook against the precomputed seed bands (notebooks 03 and 04).

``LiveSession`` trains each norm with its band's configuration over one shared, redrawn plot
(``LiveBandPlot``) and records the residual variance after every block (``Snapshots``); ``train_live``
trains now and leaves the run in the train-or-load cache for notebook 04. The bands, gaps and verdict
lines themselves are ``curse_of_depth.stats``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence

import torch

from .. import analysis, plots
from ..data import load_corpus
from ..model import ModelConfig
from ..stats import Band, bands_from_data
from ..train import LivePlot, TrainConfig, run_key, runs_dir, train_or_load
from . import results


def load_bands(tag: str) -> tuple[dict[str, Band], dict]:
    """The bands of ``bands_<tag>`` from the results pack, and the whole stored record (provenance, configs)."""
    record = results.load(f"bands_{tag}")
    return bands_from_data(record["data"]), record


def config_label(record: dict) -> str:
    """A short name of a bands record's configuration, e.g. "width 64, 24 blocks, 80-step schedule"."""
    data = record.get("data", record)
    m, t = data["model"], data["train"]
    return f"width {m['d_model']}, {m['n_layers']} blocks, {t['max_steps']}-step schedule"


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
    def measure(model) -> list[float]:
        return analysis.residual_variance_per_token(analysis.residual_stream(model, idx)).tolist()[1:]

    return measure



# ----------------------------------------------------------------------------- the live plot and session


class LiveBandPlot:
    """A ``train`` callback that redraws the precomputed bands with every live validation curve so far.

    Pass one instance to several runs (``norm`` is read from each run's config): they share one figure, updated
    in place in a notebook. Without a notebook front end it draws nothing. Notebook 03.
    """

    def __init__(self, bands: dict[str, Band], title: str = "", norms: Sequence[str] | None = None):
        self.bands, self.title, self.norms = bands, title, list(norms or bands)
        self.curves: dict[str, tuple[list[int], list[float]]] = {}
        self.handle = self.fig = None
        if LivePlot.available():
            import matplotlib.pyplot as plt
            from IPython.display import display

            self.fig, self.ax = plots.subplots()
            plt.close(self.fig)  # detached from pyplot: only the handle shows it, no extra copy at the end of a cell
            self._draw()
            self.handle = display(self.fig, display_id=True)

    def _draw(self) -> None:
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
