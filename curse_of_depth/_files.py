"""Files the kit writes: where they go (``data_dir``), atomic writes, checksums.

Every file is written to a temporary name in the same folder and renamed into
place, so an interrupted write never leaves a half file under the real name.
Files and folders get the usual modes the umask allows (0644 / 0755 under umask
022), not ``tempfile``'s private 0600 / 0700: a cache an instructor prepares on
a shared machine must be readable by the attendees' accounts.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent


def data_dir() -> Path:
    """Cache folder: ``COD_DATA_DIR`` if set, else ``data/cache`` in a checkout, else ``~/.cache/curse_of_depth``."""
    env = os.environ.get("COD_DATA_DIR")
    if env:
        path = Path(env).expanduser()
    elif (REPO_ROOT / "pyproject.toml").exists() and os.access(REPO_ROOT, os.W_OK):
        path = REPO_ROOT / "data" / "cache"
    else:
        path = Path.home() / ".cache" / "curse_of_depth"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def umask() -> int:
    """This process's umask, read without changing it where the OS shows it (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def usual_mode(path: str | os.PathLike) -> None:
    """Give a file written by another library (safetensors writes 0600) the mode a plain ``open`` would."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~umask())


def _fresh_name(folder: Path, prefix: str, suffix: str) -> Path:
    return folder / f"{prefix}{secrets.token_hex(4)}{suffix}"


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new, uniquely named folder in ``parent`` with the umask's usual mode (``tempfile.mkdtemp`` gives 0700)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = _fresh_name(parent, prefix, "")
        try:
            os.mkdir(path, 0o777)  # the umask applies, as for any folder
            return path
        except FileExistsError:
            continue


def _open_temp(folder: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    while True:
        path = _fresh_name(folder, prefix, suffix)
        try:  # O_EXCL: never reuse another writer's name; 0o666 & ~umask, as for any new file
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), path
        except FileExistsError:
            continue


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temp(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def atomic_save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """safetensors, written atomically (safe to load: no pickle)."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    return atomic_write_bytes(path, data)


def config_key(obj) -> str:
    """A short stable hash of a JSON-serializable config (the train-or-load cache key)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())[:16]
