"""The precomputed results pack (``data/results/``) and the claim checker notebooks use.

Results are JSON: ``{"provenance": {...}, "data": {...}}``. Provenance records
the exact command, code version, hardware, seeds and wall time, so every
figure a notebook shows can be re-made. The pack also holds model checkpoints
(safetensors). ``MANIFEST.json`` holds the sha256 of every file of the pack;
``load`` and ``load_checkpoint`` refuse a file whose checksum does not match,
and ``verify`` (the doctor) names each damaged file and how to restore it.

Claims: a notebook cell measures something, then calls ``claim(statement, ok)``.
The cell fails (an exception) when the claim is false; when it holds it prints
one stable verdict line, which is what nbval compares.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .. import _files
from .._files import atomic_write_json, sha256_file

MANIFEST = "MANIFEST.json"


def results_dir() -> Path:
    """The precomputed results pack: ``COD_RESULTS_DIR`` if set, else ``data/results`` in a checkout, else the
    copy inside the installed package (``curse_of_depth/results_pack``, shipped in the wheel for Colab)."""
    env = os.environ.get("COD_RESULTS_DIR")
    if env:
        return Path(env).expanduser()
    checkout = _files.REPO_ROOT / "data" / "results"
    return checkout if checkout.is_dir() else _files.PACKAGE_ROOT / "results_pack"


class ClaimFailed(AssertionError):
    """A notebook's claim did not hold on this run."""


def claim(statement: str, ok: bool, detail: str = "") -> None:
    """Assert ``ok``; print the verdict line ``CLAIM HOLDS: <statement>``.

    Returns None, so a cell that ends with ``claim(...)`` shows the line once (a returned string was echoed
    as the cell's ``Out[]``, a second copy of the line)."""
    if not ok:
        raise ClaimFailed(f"claim does not hold: {statement}" + (f" ({detail})" if detail else ""))
    print(f"CLAIM HOLDS: {statement}")


def verdict(statement: str) -> None:
    """Print a measured finding whose direction is not asserted (e.g. which method won). Returns None (see
    ``claim``)."""
    print(f"MEASURED: {statement}")


def code_version() -> str:
    """Git revision of the checkout (``+dirty`` if modified); ``COD_CODE_VERSION`` overrides (e.g. a tree copied
    to a GPU machine without its .git)."""
    if os.environ.get("COD_CODE_VERSION"):
        return os.environ["COD_CODE_VERSION"]
    try:
        rev = subprocess.run(["git", "-C", str(_files.REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(_files.REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return (rev or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version
        try:
            return "release-" + version("curse-of-depth")
        except PackageNotFoundError:
            return "unknown"


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"{n}x {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def provenance(seeds=None, wall_s: float | None = None, command: str | None = None, **extra) -> dict:
    return {
        "command": command or " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "code_version": code_version(),
        "hardware": hardware(),
        "seeds": list(seeds) if seeds is not None else None,
        "wall_s": None if wall_s is None else round(wall_s, 2),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        **extra,
    }


def restore_hint(name: str, folder: Path | None = None) -> str:
    """How to get back a pristine copy of the pack's file ``name``: git in a checkout, else a reinstall."""
    folder = Path(folder) if folder else results_dir()
    real = (folder / name).resolve()
    repo = _files.REPO_ROOT.resolve()
    if (repo / ".git").exists() and real.is_relative_to(repo):
        return f"restore it with `git checkout -- {real.relative_to(repo).as_posix()}` (in {repo})"
    if real.is_relative_to(_files.PACKAGE_ROOT.resolve()):
        return ("reinstall the kit to restore it (pip install --force-reinstall --no-deps curse-of-depth, or the "
                "notebook's first cell on Colab)")
    return f"copy {name} again from a clone's data/results/ (git checkout -- data/results/{name})"


def read_manifest(folder: Path | None = None) -> dict[str, str]:
    """``{file name: sha256}`` of the pack (empty when there is no manifest yet); a damaged manifest raises."""
    folder = Path(folder) if folder else results_dir()
    path = folder / MANIFEST
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is damaged ({exc}): {restore_hint(MANIFEST, folder)}") from None
    if not isinstance(manifest, dict) or not all(isinstance(v, str) for v in manifest.values()):
        raise ValueError(f"{path} is not a manifest of sha256 sums: {restore_hint(MANIFEST, folder)}")
    return manifest


def record(path: str | os.PathLike) -> Path:
    """Add (or update) a file of the pack in its manifest, e.g. a checkpoint copied into ``data/results``."""
    path = Path(path)
    manifest = read_manifest(path.parent)
    manifest[path.name] = sha256_file(path)
    atomic_write_json(path.parent / MANIFEST, dict(sorted(manifest.items())))
    return path


def save(name: str, data, prov: dict, folder: Path | None = None) -> Path:
    """Write ``<name>.json`` atomically and record its sha256 in the manifest."""
    folder = Path(folder) if folder else results_dir()
    return record(atomic_write_json(folder / f"{name}.json", {"provenance": prov, "data": data}))


def verify_file(name: str, folder: Path | None = None, manifest: dict[str, str] | None = None) -> Path:
    """The path of the pack's file ``name`` once its sha256 matches the manifest; else an error naming the fix."""
    folder = Path(folder) if folder else results_dir()
    path = folder / name
    manifest = read_manifest(folder) if manifest is None else manifest
    if not path.exists():
        raise FileNotFoundError(f"the results pack in {folder} has no {name}: {restore_hint(name, folder)}")
    expected = manifest.get(name)
    if expected is None:
        raise ValueError(f"{name} is not listed in {folder / MANIFEST}: add it with "
                         f"curse_of_depth.workshop.results.record({str(path)!r}) if it belongs to the pack")
    if sha256_file(path) != expected:
        raise ValueError(f"{name} in the results pack is damaged (its sha256 differs from {MANIFEST}: edited, "
                         f"truncated or corrupted): {restore_hint(name, folder)}")
    return path


def verify(folder: Path | None = None) -> dict[str, str]:
    """``{file name: what is wrong and how to restore it}`` for every damaged, missing or unlisted file of the pack
    (empty when every checksum matches)."""
    folder = Path(folder) if folder else results_dir()
    try:
        manifest = read_manifest(folder)
    except ValueError as exc:
        return {MANIFEST: str(exc)}
    names = sorted({p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST} | set(manifest))
    problems = {}
    for name in names:
        try:
            verify_file(name, folder, manifest)
        except (ValueError, FileNotFoundError) as exc:
            problems[name] = str(exc)
    return problems


def load(name: str, folder: Path | None = None) -> dict:
    """``{"provenance": ..., "data": ...}`` of a stored result, checksum verified."""
    folder = Path(folder) if folder else results_dir()
    path = folder / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no precomputed result {name!r} in {folder}; regenerate it with COD_MODE=full "
            "or restore data/results/ from the repository"
        )
    manifest = read_manifest(folder)
    if manifest.get(path.name) is None:
        raise ValueError(f"{path.name} is not listed in {folder / MANIFEST}; re-save it with curse_of_depth.workshop.results.save")
    if sha256_file(path) != manifest[path.name]:
        raise ValueError(f"{path} does not match its sha256 in {MANIFEST} (edited or corrupt); "
                         f"{restore_hint(path.name, folder)}, or regenerate it with COD_MODE=full")
    return json.loads(path.read_text())


def load_checkpoint(name: str, folder: Path | None = None, device="cpu"):
    """``(model, result)`` of the pack's checkpoint ``name`` (``.safetensors`` optional), checksum verified first:
    a damaged file is named with its fix instead of loading wrong weights (notebook 04)."""
    from ..train import load_checkpoint as load_verified

    name = name if name.endswith(".safetensors") else f"{name}.safetensors"
    return load_verified(verify_file(name, folder), device=device)


def available(folder: Path | None = None) -> list[str]:
    folder = Path(folder) if folder else results_dir()
    return sorted(p.stem for p in folder.glob("*.json") if p.name != MANIFEST)
