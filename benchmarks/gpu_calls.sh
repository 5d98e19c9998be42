#!/usr/bin/env bash
# The device calls that made the GPU results (bands for notebooks 03/04, the scale map, the recipe map, bench_gpu.py).
# Run from the repository root on a machine with NVIDIA GPUs, the corpora caches in data/cache/:
#   bash benchmarks/gpu_calls.sh bench|mfu|bands|map|recipes OUTDIR [deadline_s] [sweep-run args...]
# Each step writes into OUTDIR; results are then collected on any machine with
#   python -m curse_of_depth.workshop.sweep collect-bands --runs OUTDIR/bands
#   python -m curse_of_depth.workshop.sweep collect --runs OUTDIR/map ...
set -u
step=$1; out=$2; shift 2
export PYTHONPATH=${PYTHONPATH:-.} PYTHONUNBUFFERED=1 COD_THREADS=1 HF_HUB_OFFLINE=1 TORCHINDUCTOR_COMPILE_THREADS=1
# inductor's compiled kernels in one folder that outlives the call: runs of one (depth, norm) share them,
# and a second call on a machine still warm compiles nothing twice
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/.gpu_cache/inductor}
mkdir -p "$out"
case $step in
  bench) timeout 330 python3 benchmarks/bench_gpu.py --out "$out/gpu_h200.json" ;;
  bands) python3 -m curse_of_depth.workshop.sweep bands --out "$out/bands" ;;
  prep)  python3 -c "from curse_of_depth.data import load_corpus as L; [print(L(n).summary()) for n in '$*'.split()]" ;;
  mfu)   timeout 300 python3 benchmarks/bench_gpu.py --trainer-only --batch 256 --trainer-steps 300 \
           --out "$out/gpu_h200_cli.json" ;;
  recipes) deadline=$1; shift
         python3 -m curse_of_depth.workshop.sweep run --grid recipes --out "$out/recipes" --deadline "$deadline" "$@" ;;
  map)   deadline=$1; shift
         python3 -m curse_of_depth.workshop.sweep run --grid map --out "$out/map" --per-device 6 --deadline "$deadline" "$@" ;;
  *) echo "unknown step $step"; exit 2 ;;
esac
