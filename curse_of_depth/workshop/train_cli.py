"""``python -m curse_of_depth.train``: the trainer's command line (CPU, one GPU, or several under
torchrun).

Each seed writes ``OUT/seed<S>/result.json`` (with provenance), ``model.safetensors`` and a
resumable training state in ``state/``; ``--resume`` continues it. The trainer itself is
``curse_of_depth.train``.
"""

from __future__ import annotations

import argparse
import json
import os
import typing
from dataclasses import fields
from pathlib import Path

import torch

from .. import train as trainer
from .._files import atomic_write_json
from ..model import ModelConfig
from ..train import RunResult, TrainConfig, save_checkpoint, train
from . import results, runtime

_CLI_DOC = """Train curse_of_depth models from the command line: CPU, one GPU or several (torchrun).

examples:
  python -m curse_of_depth.train --norm lns --n-layers 12 --max-steps 480 --out runs/lns12
  python -m curse_of_depth.train --config sweep.json --seeds 0,1,2 --out runs/sweep --resume
  torchrun --standalone --nproc_per_node=4 -m curse_of_depth.train --d-model 256 --n-layers 48 \\
      --out runs/big

--config reads JSON {"model": {...ModelConfig...}, "train": {...TrainConfig...}} (or one flat
object); flags given on the command line override it. Each seed writes DIR/seed<S>/result.json
(with provenance), DIR/seed<S>/model.safetensors and a resumable training state in
DIR/seed<S>/state/. Under torchrun the batch size is per process, ranks draw different batches,
losses are all-reduced and only rank 0 writes.
"""


def _add_dataclass_flags(parser, cls, group_title: str,
                         prefix_clash: tuple[str, ...] = ()) -> list[str]:
    """One flag per dataclass field; fields in ``prefix_clash`` get a ``--train-`` prefix (both
    configs have them)."""
    group = parser.add_argument_group(group_title)
    hints = typing.get_type_hints(cls)
    names = []
    for f in fields(cls):
        hint = hints[f.name]
        dest = ("train_" if f.name in prefix_clash else "") + f.name
        flag = "--" + dest.replace("_", "-")
        default = f.default
        if hint is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None,
                               help=f"(default {default})")
        elif f.name == "betas":
            group.add_argument(flag, dest=dest, default=None,
                               type=lambda s: tuple(float(v) for v in s.split(",")),
                               help="beta1,beta2 (default 0.9,0.95)")
        else:
            base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
            group.add_argument(flag, dest=dest, default=None, type=base,
                               help=f"(default {default})")
        names.append(dest)
    return names


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds takes integers like 0,1,2, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds needs at least one integer >= 0, got {text!r}")
    return seeds


def _configs_from_args(args, model_names: list[str], train_names: list[str]) -> tuple[dict, dict]:
    model_kw: dict = {}
    train_kw: dict = {}
    if args.config:
        cfg = json.loads(Path(args.config).read_text())
        if "model" in cfg or "train" in cfg:
            model_kw, train_kw = dict(cfg.get("model", {})), dict(cfg.get("train", {}))
        else:
            model_kw = {k: v for k, v in cfg.items() if k in model_names}
            train_kw = {k: v for k, v in cfg.items() if k in train_names}
            unknown = set(cfg) - set(model_names) - set(train_names)
            if unknown:
                raise ValueError(f"{args.config}: unknown fields {sorted(unknown)}")
    for name in model_names:
        if getattr(args, name) is not None:
            model_kw[name] = getattr(args, name)
    for dest in train_names:
        if getattr(args, dest) is not None:
            name = "seq_len" if dest == "train_seq_len" else dest
            train_kw[name] = getattr(args, dest)
    return model_kw, train_kw


def _init_distributed() -> tuple[int, int]:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1): NCCL on GPUs,
    gloo on CPUs."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        runtime.configure_threads()
        return trainer._dist()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE",
                                         world))  # N processes on one CPU share its cores
        runtime.configure_threads(None if os.environ.get("COD_THREADS") else
                                  max(1, runtime.physical_cores() // local_world))
        dist.init_process_group("gloo")
    return trainer._dist()


def _parser() -> tuple[argparse.ArgumentParser, list[str], list[str]]:
    parser = argparse.ArgumentParser(prog="python -m curse_of_depth.train", description=_CLI_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--config", help="JSON file with model and train fields (flags override it)")
    add("--out", help="folder for results, checkpoints and training state (rank 0 writes)")
    add("--seeds", default=None, help="comma-separated seeds, one run each (default: --seed)")
    add("--checkpoint-every", type=int, default=None,
        help="write a resumable state every N steps (default: eval_every, when --out is given)")
    add("--resume", action="store_true",
        help="continue each seed from its state in --out; seeds with a complete result.json are "
             "skipped")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--compile", action=argparse.BooleanOptionalAction, default=None,
        help="torch.compile the training step (default: on with a CUDA GPU, off on a CPU)")
    model_names = _add_dataclass_flags(parser, ModelConfig, "model (ModelConfig)")
    title = "training (TrainConfig; --train-seq-len defaults to --seq-len)"
    train_names = _add_dataclass_flags(parser, TrainConfig, title, prefix_clash=("seq_len",))
    return parser, model_names, train_names


def _plan(args, model_names: list[str], train_names: list[str]):
    """(model config, train config, seeds, checkpoint interval) from the flags, or ValueError."""
    model_kw, train_kw = _configs_from_args(args, model_names, train_names)
    seeds = _parse_seeds(args.seeds) if args.seeds else [train_kw.get("seed", 0)]
    model_cfg = ModelConfig(**model_kw)
    # the model's full context unless told otherwise
    train_kw.setdefault("seq_len", model_cfg.seq_len)
    train_cfg = TrainConfig(**train_kw)
    trainer._check_inputs(model_cfg, train_cfg)
    if args.resume and not args.out:
        raise ValueError("--resume needs --out DIR (where the training state was written)")
    every = args.checkpoint_every
    if every is None:
        every = train_cfg.eval_every if args.out else 0
    if every and not args.out:
        raise ValueError("--checkpoint-every needs --out DIR")
    return model_cfg, train_cfg, seeds, every


def save_result(result: RunResult, path: str | os.PathLike, provenance: dict | None = None) -> Path:
    """``result.to_dict()`` (with ``provenance`` first, when given) as JSON, atomically."""
    data = result.to_dict() if provenance is None else {"provenance": provenance,
                                                        **result.to_dict()}
    return atomic_write_json(path, data)


def load_result(path: str | os.PathLike) -> RunResult:
    d = json.loads(Path(path).read_text())
    d.pop("provenance", None)
    return RunResult.from_dict(d)


def _run_seed(args, model_cfg: ModelConfig, cfg: TrainConfig, every: int, rank: int, world: int):
    """Train one seed (or skip it when ``--resume`` finds it complete); None when skipped."""
    run_dir = Path(args.out) / f"seed{cfg.seed}" if args.out else None
    if args.resume and run_dir is not None and (run_dir / "result.json").exists():
        done = load_result(run_dir / "result.json")
        if (done.model_config, done.train_config) == (model_cfg, cfg) and \
                done.stop_reason in ("max_steps", "diverged"):
            if rank == 0:
                print(f"seed {cfg.seed}: already complete in {run_dir}, skipped")
            return None
    state = run_dir / "state" if run_dir else None
    resume = bool(args.resume and state and any(state.glob("state-*.json")))
    result = train(model_cfg, cfg, progress=not args.no_progress, state_dir=state,
                   checkpoint_every=every, resume=resume, compile=args.compile)
    if rank == 0:
        if run_dir is not None:
            save_checkpoint(result.model, run_dir / "model.safetensors", result)
            prov = results.provenance(seeds=[cfg.seed], wall_s=result.wall_s, world_size=world,
                                      device=result.device, resumed=resume)
            save_result(result, run_dir / "result.json", provenance=prov)
        keys = ("steps_done", "stop_reason", "diverged", "wall_s", "tokens_per_s", "first_step_s",
                "tokens_seen")
        summary = {"seed": cfg.seed, "final_val": trainer._finite_or_none(result.final_val),
                   **{k: getattr(result, k) for k in keys}, "world_size": world}
        print(json.dumps(summary), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m curse_of_depth.train``: see ``--help``. Notebook 03 points researchers here."""
    parser, model_names, train_names = _parser()
    args = parser.parse_args(argv)
    try:
        model_cfg, train_cfg, seeds, every = _plan(args, model_names, train_names)
    except (ValueError, TypeError, OSError, json.JSONDecodeError) as exc:
        parser.error(str(exc))
    rank, world = _init_distributed()
    try:
        for seed in seeds:
            cfg = TrainConfig(**{**train_cfg.to_dict(), "seed": seed})
            result = _run_seed(args, model_cfg, cfg, every, rank, world)
            if result is not None and result.interrupted:
                break
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
