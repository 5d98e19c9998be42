"""Workshop and research tooling around the notebooks; the teaching core (``curse_of_depth``)
imports it only inside functions (progress bars, the trainer's memory guard).
``curse_of_depth/README.md`` lists its modules and their notebooks.

Importing this package registers the scale map's corpora (gcide, gcide-bpe, shakespeare-bpe) with
``curse_of_depth.data.load_corpus``. The modules with a command line (doctor, sweep, precompute,
train_cli) are not imported here, so ``python -m`` runs them cleanly.
"""

from . import corpora as _corpora  # noqa: F401  (registers the scale map's corpora)
from .budgets import for_notebook
from .results import claim, verdict
from .runtime import mode, pick

__all__ = ["claim", "for_notebook", "mode", "pick", "verdict"]
