"""GPU throughput of the kit's model at the paper's LLaMA-130M shape, and the 1 -> N GPU speedup under torchrun.

Run on a machine with >= 1 NVIDIA GPU (the numbers in benchmarks/README.md came from H200s):

    python benchmarks/bench_gpu.py --out benchmarks/results/gpu_h200.json

What it measures, side by side in one run:

* ``matmul``: a plain bf16 8192^3 matmul (the achievable ceiling on this GPU),
* ``loop_*``: training steps (forward + backward + AdamW) of ``CausalLM`` at
  d768 / 12 layers / 12 heads / SwiGLU 2048 / vocab 32000 / seq 256 (the
  paper's LLaMA-130M), bf16 autocast with fp32 master weights, eager and with
  ``torch.compile`` -- tokens/s and model-FLOPs utilization (MFU) against the
  datasheet's dense bf16 peak (989 TFLOP/s for H100/H200 SXM) and against the
  measured matmul rate;
* ``trainer_*``: the package's own CLI trainer (``python -m
  curse_of_depth.train``, compiled by default on a GPU, what the maps run) on 1 GPU and under
  ``torchrun`` on N GPUs with the same per-GPU batch: tokens/s and the speedup. ``--trainer-only``
  measures the CLI alone: tokens/s over all steps, and steady-state tokens/s and MFU with the first
  step (which holds the compilation) left out.

MFU counts 6 N + 6 d V + 12 L d T FLOPs per token (``CausalLM.flops_per_token``, the PaLM appendix rule).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curse_of_depth.model import ModelConfig, build_model  # noqa: E402

LLAMA_130M = dict(vocab_size=32000, d_model=768, n_layers=12, n_heads=12, ffn_hidden=2048, seq_len=256)
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12}  # dense bf16, SXM datasheet


def datasheet_peak() -> float:
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16.items() if k in name), 989.4e12)


def matmul_rate(n: int = 8192, reps: int = 50) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (start.elapsed_time(end) / 1e3)


def bench_loop(batch: int, compile_model: bool, steps: int = 30, warmup: int = 8) -> dict:
    """Training steps of the kit's model at the LLaMA-130M shape; returns tokens/s and step time."""
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = ModelConfig(**LLAMA_130M)
    model = build_model(cfg, seed=0).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    step_fn = torch.compile(model) if compile_model else model
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), device="cuda", generator=g)
    y = torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), device="cuda", generator=g)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(x, y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        step()
    end.record()
    torch.cuda.synchronize()
    step_s = start.elapsed_time(end) / 1e3 / steps
    tokens = batch * cfg.seq_len
    flops_tok = model.flops_per_token()
    out = {"batch": batch, "seq_len": cfg.seq_len, "compile": compile_model, "steps_timed": steps,
           "warmup_s_incl_compile": round(warm_s, 1), "step_ms": round(step_s * 1e3, 2),
           "tokens_per_s": round(tokens / step_s), "flops_per_token": flops_tok,
           "achieved_tflops": round(flops_tok * tokens / step_s / 1e12, 1),
           "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 1), "n_params": model.num_params()}
    return out


def trainer_cli(nproc: int, batch: int, steps: int, extra: tuple[str, ...] = ()) -> dict:
    """The package CLI trainer (bf16 autocast) on ``nproc`` GPUs; tokens/s from its RunResult."""
    shape = ["--vocab-size", "32000", "--d-model", "768", "--n-layers", "12", "--n-heads", "12", "--ffn-hidden", "2048",
             "--seq-len", "256", "--batch-size", str(batch), "--max-steps", str(steps), "--eval-every", "100000",
             "--eval-batches", "2", "--no-progress", "--warmup-frac", "0.0", *extra]
    if nproc == 1:
        cmd = [sys.executable, "-m", "curse_of_depth.train", *shape]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "curse_of_depth.train", *shape]
    env = dict(os.environ, PYTHONPATH=str(ROOT), COD_THREADS="4")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"command": shlex.join(cmd), "error": (proc.stderr or proc.stdout)[-2000:]}
    summary = json.loads(lines[-1])
    out = {"command": shlex.join(cmd), "nproc": nproc, "batch_per_gpu": batch, "steps": steps,
           "tokens_per_s": summary["tokens_per_s"], "wall_s": round(wall, 1), "summary": summary}
    if summary.get("first_step_s") and summary.get("tokens_seen"):
        per_step = summary["tokens_seen"] / summary["steps_done"]
        train_s = summary["tokens_seen"] / summary["tokens_per_s"]
        out["steady_tokens_per_s"] = round((summary["tokens_seen"] - per_step) / (train_s - summary["first_step_s"]))
        out["first_step_s"] = summary["first_step_s"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_h200.json")
    parser.add_argument("--batch", type=int, default=64, help="sequences per step (per GPU) in the loops")
    parser.add_argument("--trainer-steps", type=int, default=150)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--loops-only", action="store_true", help="skip the trainer/torchrun measurements")
    parser.add_argument("--trainer-only", action="store_true", help="only the CLI trainer on one GPU (compiled, "
                        "its default; --skip-compile: eager)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU")
    n_gpu = torch.cuda.device_count()
    res: dict = {"command": shlex.join([Path(sys.executable).name, *sys.argv]), "device": torch.cuda.get_device_name(0),
                 "n_gpus": n_gpu, "torch": torch.__version__, "shape": LLAMA_130M, "date": time.strftime("%F %T")}
    res["matmul_bf16_tflops"] = round(matmul_rate() / 1e12, 1)
    peak = datasheet_peak()
    res["datasheet_peak_tflops"] = round(peak / 1e12, 1)
    if args.trainer_only:
        flops_tok = build_model(ModelConfig(**LLAMA_130M)).flops_per_token()
        t = trainer_cli(1, args.batch, args.trainer_steps, ("--no-compile",) if args.skip_compile else ())
        for key in ("tokens_per_s", "steady_tokens_per_s"):
            if t.get(key):
                t[key.replace("tokens_per_s", "mfu_datasheet")] = round(t[key] * flops_tok / peak, 3)
                t[key.replace("tokens_per_s", "mfu_measured_matmul")] = round(
                    t[key] * flops_tok / (res["matmul_bf16_tflops"] * 1e12), 3)
        res["trainer_1gpu"] = t
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
        print(json.dumps(res, indent=1))
        return 0
    res["loop_eager"] = bench_loop(args.batch, False)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    if not args.skip_compile:
        res["loop_compiled"] = bench_loop(args.batch, True)
        torch.cuda.empty_cache()
    for key in ("loop_eager", "loop_compiled"):
        if key in res:
            t = res[key]["achieved_tflops"] * 1e12
            res[key]["mfu_datasheet"] = round(t / peak, 3)
            res[key]["mfu_measured_matmul"] = round(t / (res["matmul_bf16_tflops"] * 1e12), 3)
    print(json.dumps(res, indent=1), flush=True)
    if args.loops_only:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
        return 0
    res["trainer_1gpu"] = trainer_cli(1, args.batch, args.trainer_steps)
    if n_gpu > 1:
        res[f"trainer_{n_gpu}gpu"] = trainer_cli(n_gpu, args.batch, args.trainer_steps)
        one, many = res["trainer_1gpu"].get("tokens_per_s"), res[f"trainer_{n_gpu}gpu"].get("tokens_per_s")
        if one and many:
            res["torchrun_speedup"] = round(many / one, 3)
    flops_tok = res["loop_eager"]["flops_per_token"]
    if res["trainer_1gpu"].get("tokens_per_s"):
        res["trainer_1gpu"]["mfu_datasheet"] = round(res["trainer_1gpu"]["tokens_per_s"] * flops_tok / peak, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if not k.startswith("loop")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
