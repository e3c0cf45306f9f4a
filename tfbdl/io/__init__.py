"""Files of a run: atomic writes, JSON, provenance, run directories and HDF5 stores (no TensorFlow).

- :mod:`tfbdl.io.atomic`: atomic writes (temp file in the same folder, fsync, ``os.replace``,
  fsync of the folder), so a killed job leaves either the old or the new file, never half of one;
- :mod:`tfbdl.io.jsonio`: numpy values made plain JSON, canonical and readable JSON texts;
- :mod:`tfbdl.io.provenance`: package versions, the git commit, run ids derived from configs;
- :mod:`tfbdl.io.rundir`: :class:`RunDir`, one run's folder with its config, metrics, summary and
  ``progress.json`` records of finished pieces (a rerun skips them);
- :mod:`tfbdl.io.hdf5`: small HDF5 files of named arrays and attributes;
- :mod:`tfbdl.io.blocks`: crash-safe, resumable HDF5 stores filled task by task (kernel matrices,
  NTKs).

Every public name of these modules is importable from ``tfbdl.io`` too.
"""

from tfbdl.io.atomic import (
    KILL_AT_WRITE_ENV,
    PathLike,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
    fsync_file,
)
from tfbdl.io.blocks import (
    CRASH_AFTER_ENV,
    MAX_CHUNK_BYTES,
    TASK_DONE,
    BlockStore,
    StoreFormat,
    create_store,
    write_layout,
)
from tfbdl.io.hdf5 import load_h5, save_h5
from tfbdl.io.jsonio import atomic_write_json, canonical_json, json_text, to_jsonable
from tfbdl.io.provenance import (
    VERSIONED_PACKAGES,
    check_folder_name,
    config_hash,
    default_run_id,
    git_commit,
    package_versions,
)
from tfbdl.io.rundir import RunDir

__all__ = [
    "BlockStore",
    "CRASH_AFTER_ENV",
    "KILL_AT_WRITE_ENV",
    "MAX_CHUNK_BYTES",
    "PathLike",
    "RunDir",
    "StoreFormat",
    "TASK_DONE",
    "VERSIONED_PACKAGES",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "canonical_json",
    "check_folder_name",
    "config_hash",
    "create_store",
    "default_run_id",
    "fsync_dir",
    "fsync_file",
    "git_commit",
    "json_text",
    "load_h5",
    "package_versions",
    "save_h5",
    "to_jsonable",
    "write_layout",
]
