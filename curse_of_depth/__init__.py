"""curse_of_depth: a workshop kit on *The Curse of Depth in Large Language Models* (arXiv 2502.05795).

One concept per module: ``model`` (the decoder and its norm placements),
``data`` (corpora), ``train`` (the trainer), ``theory`` (variance recursions),
``analysis`` (per-layer diagnostics), ``hf`` (Hugging Face models),
``layernorm_scaling`` (LNS on Hugging Face models), ``compress`` (pruning),
``results`` (precomputed results and claims), ``plots`` and ``widgets``.
Importing the package sets torch's thread count to the free physical cores
(override with ``COD_THREADS``).
"""

from .model import NORMS, CausalLM, ModelConfig, build_model
from .runtime import configure_threads, mode, pick

__version__ = "0.1.0"
__all__ = ["NORMS", "CausalLM", "ModelConfig", "build_model", "configure_threads", "mode", "pick", "__version__"]

configure_threads()
