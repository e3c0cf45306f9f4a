"""Provenance of a run: package versions, the git commit, and run ids derived from configs.

Everything here reads metadata or runs ``git``; nothing imports TensorFlow (it takes seconds).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import platform
import re
import subprocess
from typing import Any

from tfbdl.errors import InvalidOptionError
from tfbdl.io.atomic import PathLike
from tfbdl.io.jsonio import canonical_json

__all__ = [
    "VERSIONED_PACKAGES",
    "check_folder_name",
    "config_hash",
    "default_run_id",
    "git_commit",
    "package_versions",
]

#: The distributions whose versions :func:`package_versions` records (results depend on them).
VERSIONED_PACKAGES = (
    "tfbdl",
    "tensorflow",
    "keras",
    "tensorflow-probability",
    "gpflow",
    "numpy",
    "scipy",
    "h5py",
    "click",
    "matplotlib",
)


def package_versions() -> dict[str, str | None]:
    """Versions of python and of :data:`VERSIONED_PACKAGES` (None when not installed).

    Read from installed metadata, so nothing is imported (TensorFlow takes seconds to load).
    """
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out["tfbdl"] is None:  # running from a source checkout that is not pip-installed
        from tfbdl import __version__

        out["tfbdl"] = __version__
    return out


def _git(args: list[str], cwd: pathlib.Path) -> str | None:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")  # never take the index lock
    try:
        res = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def git_commit(path: PathLike | None = None) -> dict | None:
    """{"commit": sha, "dirty": bool} of the git checkout holding ``path``, or None.

    ``path`` defaults to the folder of the tfbdl package. "dirty" means tracked files differ
    from the commit (untracked files are ignored). None when there is no git, no repository,
    or no commit yet; never raises.
    """
    try:
        folder = pathlib.Path(path) if path is not None else pathlib.Path(__file__).resolve().parents[1]
        if not folder.is_dir():
            folder = folder.parent
        if not folder.is_dir():
            return None
    except OSError:
        return None
    sha = _git(["rev-parse", "--verify", "-q", "HEAD"], folder)
    if not sha or not sha.strip():
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no"], folder)
    return {"commit": sha.strip(), "dirty": bool(status.strip()) if status is not None else None}


def config_hash(config: dict) -> str:
    """8 hex characters of sha256 of the canonical JSON of ``config`` (key order ignored)."""
    try:
        text = canonical_json(config)
    except TypeError as e:
        raise InvalidOptionError(f"config must hold JSON values only ({e})") from e
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_folder_name(value: Any, what: str) -> str:
    """``value`` if it is a safe single folder name (letters, digits, '-', '_', '.'; not only
    dots), else InvalidOptionError naming ``what``."""
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or set(value) == {"."}:
        raise InvalidOptionError(
            f"{what} {value!r} is not a safe folder name: use letters, digits, '-', '_' and '.' only"
        )
    return value


def default_run_id(config: dict, scale: str) -> str:
    """``f"{scale}-{config_hash(config)}"``: the same command gives the same id, so a rerun resumes."""
    check_folder_name(scale, "scale")
    return f"{scale}-{config_hash(config)}"
