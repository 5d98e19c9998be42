#!/usr/bin/env bash
# Install a CPU build of torch into the given Python, without the multi-GB CUDA download.
# Order: torch already importable -> nothing to do (Colab, a GPU box you set up yourself);
# a local wheel (pip's find-links) -> use it; the official CPU index -> use it;
# otherwise PyPI (CPU-only on macOS and Windows anyway).
set -euo pipefail
PY=${1:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if "$PY" -c "import torch" 2>/dev/null; then
  echo "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"; exit 0
fi
if "$PY" -m pip install -q --no-index "$TORCH_SPEC" 2>/dev/null; then
  echo "installed $TORCH_SPEC from a local wheel"; exit 0
fi
if [ "$(uname -s)" = "Linux" ] && "$PY" -m pip install -q --timeout 20 --retries 1 \
     --index-url https://download.pytorch.org/whl/cpu "$TORCH_SPEC" 2>/dev/null; then
  echo "installed $TORCH_SPEC (CPU build) from the PyTorch CPU index"; exit 0
fi
if [ "$(uname -s)" = "Linux" ] && [ "${COD_ALLOW_CUDA_TORCH:-0}" != "1" ]; then
  echo "error: could not get a CPU build of torch (no local wheel, PyTorch CPU index unreachable)." >&2
  echo "PyPI's Linux torch is a multi-GB CUDA build; install torch yourself, or set COD_ALLOW_CUDA_TORCH=1 to accept it." >&2
  exit 1
fi
"$PY" -m pip install -q "$TORCH_SPEC"
