"""The precomputed results pack (``data/results/``) and the claim checker notebooks use.

Results are JSON: ``{"provenance": {...}, "data": {...}}``. Provenance records
the exact command, code version, hardware, seeds and wall time, so every
figure a notebook shows can be re-made. ``MANIFEST.json`` holds each file's
sha256; ``load`` refuses a file whose checksum does not match.

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


def save(name: str, data, prov: dict, folder: Path | None = None) -> Path:
    """Write ``<name>.json`` atomically and record its sha256 in the manifest."""
    folder = Path(folder) if folder else results_dir()
    path = atomic_write_json(folder / f"{name}.json", {"provenance": prov, "data": data})
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[path.name] = sha256_file(path)
    atomic_write_json(manifest_path, dict(sorted(manifest.items())))
    return path


def load(name: str, folder: Path | None = None) -> dict:
    """``{"provenance": ..., "data": ...}`` of a stored result, checksum verified."""
    folder = Path(folder) if folder else results_dir()
    path = folder / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no precomputed result {name!r} in {folder}; regenerate it with COD_MODE=full "
            "or restore data/results/ from the repository"
        )
    manifest_path = folder / MANIFEST
    expected = json.loads(manifest_path.read_text()).get(path.name) if manifest_path.exists() else None
    if expected is None:
        raise ValueError(f"{path.name} is not listed in {manifest_path}; re-save it with curse_of_depth.workshop.results.save")
    if sha256_file(path) != expected:
        raise ValueError(f"{path} does not match its sha256 in {MANIFEST} (edited or corrupt); "
                         "restore it from the repository or regenerate it with COD_MODE=full")
    return json.loads(path.read_text())


def available(folder: Path | None = None) -> list[str]:
    folder = Path(folder) if folder else results_dir()
    return sorted(p.stem for p in folder.glob("*.json") if p.name != MANIFEST)
