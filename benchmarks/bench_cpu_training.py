"""CPU training throughput: curse_of_depth's CausalLM vs Hugging Face LlamaForCausalLM, side by side.

One training step = forward + cross-entropy + backward + grad clip + AdamW step, on the same batch shape
(seq 128, batch 16), the same weights (``to_hf_llama``) and the same optimizer settings, for
(width, depth) = (64, 12), (128, 12), (64, 24). Both models are timed in one process, interleaved
(the order alternates every repeat) and summarized by medians, so machine load hits both alike.
Achieved GFLOP/s (``CausalLM.flops_per_token`` x tokens/s) is set against a plain fp32 matmul timed
in the same run. Target: ours >= 1.3x HF's tokens/s at every shape.

Run:  COD_THREADS=1 .venv/bin/python benchmarks/bench_cpu_training.py   (add --quick for a 1-minute check)
Writes benchmarks/results/cpu_training.json and the table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from curse_of_depth._files import atomic_write_json, atomic_write_text  # noqa: E402
from curse_of_depth.model import ModelConfig, build_model, to_hf_llama  # noqa: E402
from curse_of_depth.train import TrainConfig, make_optimizer  # noqa: E402
from curse_of_depth.workshop import results  # noqa: E402

HERE = Path(__file__).resolve().parent
SHAPES = [(64, 12), (128, 12), (64, 24)]
SEQ, BATCH, VOCAB, HEADS = 128, 16, 84, 4
TARGET = 1.3


def make_step(model, logits_of, cfg: TrainConfig):
    """A closure doing one full training step; identical for both implementations except the forward."""
    opt = make_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]

    def step(x, y):
        loss = F.cross_entropy(logits_of(x).flatten(0, 1).float(), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        return loss.detach()

    return step


def time_steps(step, batches) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this thread) per step, medians over the given batches.

    CPU time excludes the time the thread waited for a core, so on a shared machine it is the steadier ratio.
    """
    wall, cpu = [], []
    for x, y in batches:
        t, c = time.perf_counter(), time.thread_time()
        step(x, y)
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def matmul_gflops(m: int, k: int, n: int, reps: int = 20) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * m * k * n / statistics.median(times) / 1e9


def load_line() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        return f"loadavg {os.getloadavg()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per shape (median taken)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per repeat")
    parser.add_argument("--quick", action="store_true", help="2 repeats x 2 steps (a smoke check, not a result)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--compile", action="store_true",
                        help="also time our model under torch.compile (context, not the target: the kit's notebooks run "
                             "eager; needs a C++ compiler; ~1 min of compilation per shape)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.steps = 2, 2
    from curse_of_depth import configure_threads

    threads = configure_threads()
    torch.manual_seed(0)
    load_before = load_line()
    cfg = TrainConfig(batch_size=BATCH, seq_len=SEQ, device="cpu")
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, VOCAB, (BATCH, SEQ), generator=g), torch.randint(0, VOCAB, (BATCH, SEQ), generator=g))
               for _ in range(args.steps)]
    t_start = time.perf_counter()
    rows = []
    for d, L in SHAPES:
        mc = ModelConfig(vocab_size=VOCAB, d_model=d, n_layers=L, n_heads=HEADS, seq_len=SEQ)
        ours = build_model(mc, seed=0).train()
        hf = to_hf_llama(ours).train()
        hf.set_attn_implementation("sdpa")
        x0 = batches[0][0]
        with torch.no_grad():  # same network: same logits before any step
            diff = (ours(x0).logits - hf(input_ids=x0).logits).abs().max().item()
        steps = {"ours": make_step(ours, lambda x, m=ours: m(x).logits, cfg),
                 "hf": make_step(hf, lambda x, m=hf: m(input_ids=x, use_cache=False).logits, cfg)}
        compile_s = None
        if args.compile:  # a separate copy with the same weights, compiled whole (forward and backward graphs)
            compiled = torch.compile(build_model(mc, seed=0).train())
            steps["ours_compiled"] = make_step(compiled, lambda x, m=compiled: m(x).logits, cfg)
            t0 = time.perf_counter()
            time_steps(steps["ours_compiled"], batches[:1])
            compile_s = time.perf_counter() - t0
        for name in steps:  # warm-up: first-call allocations, lazy inits
            time_steps(steps[name], batches[:2])
        per_step = {name: [] for name in steps}
        cpu_step = {name: [] for name in steps}
        mm_model, mm_peak = [], []
        for rep in range(args.repeats):
            order = list(steps) if rep % 2 == 0 else list(steps)[::-1]
            for name in order:
                wall_s, cpu_s = time_steps(steps[name], batches)
                per_step[name].append(wall_s)
                cpu_step[name].append(cpu_s)
            mm_model.append(matmul_gflops(BATCH * SEQ, d, mc.hidden))
            mm_peak.append(matmul_gflops(1024, 1024, 1024, reps=5))
        tokens = BATCH * SEQ
        med = {k: statistics.median(v) for k, v in per_step.items()}
        tok_s = {k: tokens / v for k, v in med.items()}
        flops_tok = ours.flops_per_token()
        row = {
            "d_model": d, "n_layers": L, "n_heads": HEADS, "seq_len": SEQ, "batch_size": BATCH,
            "params": ours.num_params(), "flops_per_token": flops_tok, "init_logit_max_abs_diff": diff,
            "ours_s_per_step": per_step["ours"], "hf_s_per_step": per_step["hf"],
            "ours_tokens_per_s": round(tok_s["ours"], 1), "hf_tokens_per_s": round(tok_s["hf"], 1),
            "speedup": round(tok_s["ours"] / tok_s["hf"], 3),
            "ours_cpu_s_per_step": cpu_step["ours"], "hf_cpu_s_per_step": cpu_step["hf"],
            "speedup_cpu_time": round(statistics.median(cpu_step["hf"]) / statistics.median(cpu_step["ours"]), 3),
            "ours_gflops": round(flops_tok * tok_s["ours"] / 1e9, 2), "hf_gflops": round(flops_tok * tok_s["hf"] / 1e9, 2),
            "matmul_gflops_model_shape": round(statistics.median(mm_model), 2),
            "matmul_gflops_1024": round(statistics.median(mm_peak), 2),
        }
        if args.compile:
            row.update({"ours_compiled_tokens_per_s": round(tok_s["ours_compiled"], 1),
                        "speedup_compiled": round(tok_s["ours_compiled"] / tok_s["hf"], 3),
                        "ours_compiled_s_per_step": per_step["ours_compiled"],
                        "compile_and_first_step_s": round(compile_s, 1)})
        row["meets_target"] = row["speedup"] >= TARGET
        rows.append(row)
        print(f"d={d:4d} L={L:3d}  ours {row['ours_tokens_per_s']:8.0f} tok/s  HF {row['hf_tokens_per_s']:8.0f} tok/s  "
              f"x{row['speedup']:.2f} (CPU time x{row['speedup_cpu_time']:.2f})  ours {row['ours_gflops']:.2f} GFLOP/s vs matmul "
              f"{row['matmul_gflops_model_shape']:.1f} (model shape) / {row['matmul_gflops_1024']:.1f} (1024^3)  "
              f"|logit diff| {diff:.1e}" + (f"  | compiled ours x{row['speedup_compiled']:.2f} HF (compile {compile_s:.0f} s)"
                                              if args.compile else ""), flush=True)
    wall = time.perf_counter() - t_start
    load_after = load_line()
    import transformers

    prov = results.provenance(seeds=[0], wall_s=wall, threads=threads, transformers=transformers.__version__,
                              repeats=args.repeats, steps_per_repeat=args.steps, load_before=load_before,
                              load_after=load_after, quick=args.quick, compiled_column=args.compile)
    payload = {"provenance": prov, "target_speedup": TARGET, "all_meet_target": all(r["meets_target"] for r in rows),
               "rows": rows}
    print(f"load: before [{load_before}]  after [{load_after}]")
    if not args.no_write:
        atomic_write_json(HERE / "results" / "cpu_training.json", payload)
        write_table(rows, prov)
    return 0 if payload["all_meet_target"] else 1


BEGIN, END = "<!-- cpu_training table: begin -->", "<!-- cpu_training table: end -->"


def write_table(rows: list[dict], prov: dict) -> None:
    lines = [BEGIN, "",
             "| width | depth | params | ours tok/s | HF tok/s | ours / HF (wall) | ours / HF (CPU time) | ours GFLOP/s | "
             "HF GFLOP/s | matmul GFLOP/s (2048 x d x ffn) | matmul GFLOP/s (1024³) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    compiled = all("speedup_compiled" in r for r in rows)
    if compiled:
        lines[2] += " ours + `torch.compile` / HF (context) |"
        lines[3] += "---:|"
    for r in rows:
        lines.append(f"| {r['d_model']} | {r['n_layers']} | {r['params'] / 1e6:.2f} M | {r['ours_tokens_per_s']:,.0f} | "
                     f"{r['hf_tokens_per_s']:,.0f} | **{r['speedup']:.2f}x** | {r['speedup_cpu_time']:.2f}x | {r['ours_gflops']:.2f} | "
                     f"{r['hf_gflops']:.2f} | {r['matmul_gflops_model_shape']:.1f} | {r['matmul_gflops_1024']:.1f} |"
                     + (f" {r['speedup_compiled']:.2f}x ({r['compile_and_first_step_s']:.0f} s to compile) |" if compiled else ""))
    lines += ["", f"Measured {prov['date']}, {prov['hardware']}, transformers {prov['transformers']}, "
              f"code {prov['code_version']}, {prov['repeats']} interleaved repeats x {prov['steps_per_repeat']} steps, "
              f"medians. Load: before `{prov['load_before']}`; after `{prov['load_after']}`.", "", END]
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + "\n".join(lines) + text[text.index(END) + len(END):]
    else:
        text = text + "\n" + "\n".join(lines) + "\n"
    atomic_write_text(readme, text)


if __name__ == "__main__":
    sys.exit(main())
