"""curse_of_depth: a workshop kit on *The Curse of Depth in Large Language Models* (arXiv
2502.05795).

The teaching core is one module per concept; ``curse_of_depth/README.md`` maps each module to the
notebook that explains it. ``curse_of_depth.workshop`` holds the tooling around them (run modes, the
doctor, figures, widgets, the results pack, the sweep).
"""

import os as _os

# Must happen before torch loads its OpenMP runtime (GNU libgomp in the Linux wheels), so it is the
# one thing done at import: idle OpenMP workers spin far less, which keeps a training step fast when
# another process briefly takes a core (benchmarks/README.md). No effect once torch is loaded; a
# value the user set is kept.
_os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from .model import NORM_LABELS, NORMS, CausalLM, ModelConfig, build_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["NORMS", "NORM_LABELS", "CausalLM", "ModelConfig", "build_model", "__version__"]
