"""curse_of_depth: a workshop kit on *The Curse of Depth in Large Language Models* (arXiv 2502.05795).

Two layers. The teaching core, one concept per module, is what the notebooks explain:
``model`` (the decoder and its norm placements; notebooks 02-05), ``theory`` (variance recursions; 02),
``data`` (corpora and batches; 03), ``train`` (the trainer; 03-04), ``analysis`` (per-layer diagnostics;
01, 04), ``stats`` (seed bands, paired gaps, verdict lines; 03-04, 07), ``hf`` (pretrained Hugging Face
models, layer dropping; 01, 05, 06), ``layernorm_scaling`` (LNS on Hugging Face models; 05), ``compress``
(layer dropping and pruning; 06) and ``plots``.

``curse_of_depth.workshop`` holds the tooling around them: run modes and budgets, the environment doctor,
widgets, the live-training session, the precomputed results pack, the GGUF conversion of the offline
model, and the scale-map sweep with its corpora. The core never needs it to run.

Importing the package sets torch's thread count to the free physical cores (override with ``COD_THREADS``)
and, if torch is not loaded yet, shortens OpenMP's idle spinning.
"""

import os as _os

# Before torch loads its OpenMP runtime (GNU libgomp in the Linux wheels): worker threads that spin up to 300,000
# times when idle turn a core briefly taken by another process into a 5x slower training step (2 threads on a 2-core
# machine with one busy loop beside them: 2.7 s vs 1.1 s with 1,000 spins; idle, the two settings are within 5%).
# Has no effect when torch was imported first; a value the user set is kept.
_os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from ._threads import configure_threads  # noqa: E402
from .model import NORMS, CausalLM, ModelConfig, build_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["NORMS", "CausalLM", "ModelConfig", "build_model", "configure_threads", "__version__"]

configure_threads()
