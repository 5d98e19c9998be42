"""curse_of_depth: a workshop kit on *The Curse of Depth in Large Language Models* (arXiv 2502.05795).

One concept per module: ``model`` (the decoder and its norm placements),
``data`` (corpora), ``train`` (the trainer), ``theory`` (variance recursions),
``analysis`` (per-layer diagnostics), ``hf`` (Hugging Face models),
``layernorm_scaling`` (LNS on Hugging Face models), ``compress`` (pruning),
``results`` (precomputed results and claims), ``plots`` and ``widgets``.
Importing the package sets torch's thread count to the free physical cores
(override with ``COD_THREADS``) and, if torch is not loaded yet, shortens OpenMP's idle spinning.
"""

import os as _os

# Before torch loads its OpenMP runtime (GNU libgomp in the Linux wheels): worker threads that spin up to 300,000
# times when idle turn a core briefly taken by another process into a 5x slower training step (2 threads on a 2-core
# machine with one busy loop beside them: 2.7 s vs 1.1 s with 1,000 spins; idle, the two settings are within 5%).
# Has no effect when torch was imported first; a value the user set is kept.
_os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from .model import NORMS, CausalLM, ModelConfig, build_model  # noqa: E402
from .runtime import configure_threads, mode, pick  # noqa: E402

__version__ = "0.1.0"
__all__ = ["NORMS", "CausalLM", "ModelConfig", "build_model", "configure_threads", "mode", "pick", "__version__"]

configure_threads()
