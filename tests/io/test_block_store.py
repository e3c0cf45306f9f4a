"""Tests of tfbdl.io.blocks, the crash-safe block store under kernel-matrix and NTK files: layout,
durable task writes, refusal of foreign or stale files, and SIGKILLs between writing a block and
marking it done (a plain store, then an NTK computation), resumed bit for bit."""

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from tfbdl.errors import DataFormatError, InvalidOptionError, RunDirectoryError, ShapeError
from tfbdl.io.blocks import CRASH_AFTER_ENV, TASK_DONE, BlockStore, StoreFormat, create_store, write_layout

FMT = StoreFormat("test-blocks", 3, "test", ("A", "d"), ("seed",))
SHAPES = {"A": (7, 7), "d": (7,)}
BOUNDS = [(0, 3), (3, 6), (6, 7)]
# Task i: block i of the upper triangle of A (row-major), then the three chunks of d.
TASKS = [(("A", (slice(*r), slice(*c))),) for i, r in enumerate(BOUNDS) for c in BOUNDS[i:]]
TASKS += [(("d", (slice(*r),)),) for r in BOUNDS]
FULL = {"A": np.arange(49, dtype=np.float64).reshape(7, 7) / 7, "d": np.arange(7.0) - 3}


def _create(path, **kw):
    return create_store(path, kw.pop("fmt", FMT), SHAPES, kw.pop("dtype", "float64"), 3, len(TASKS),
                        kw.pop("metadata", {"seed": 5}))


def _write(store, i, **kw):
    store.write(i, [(name, sel, FULL[name][sel]) for name, sel in TASKS[i]], **kw)


def _values(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in ("A", "d", TASK_DONE)}


# --------------------------------------------------------------------------- layout and writes


def test_layout_is_complete_from_the_start(tmp_path):
    path = _create(tmp_path / "sub" / "s.h5")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["s.h5"]  # no temp file left
    with h5py.File(path, "r") as f:
        assert list(f) == ["A", "d", TASK_DONE]
        assert f["A"].chunks == (3, 3) and f["d"].chunks == (3,) and f["A"].dtype == np.float64
        assert f["A"].id.get_create_plist().get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY
        assert f[TASK_DONE][()].tolist() == [0] * len(TASKS)
        assert dict(f.attrs) == {"format": "test-blocks", "format_version": 3, "seed": 5, "n_tasks": len(TASKS)}
    with BlockStore(path, FMT) as store:
        assert store.metadata == {"seed": 5} and store.n_tasks == 9 and not store.done.any()


def test_tasks_written_over_two_sessions(tmp_path):
    path = _create(tmp_path / "s.h5")
    with BlockStore(path, FMT, writable=True) as store:
        for i in (0, 4, 6):
            _write(store, i)
        assert store.done.tolist() == [i in (0, 4, 6) for i in range(9)]
        np.testing.assert_array_equal(store.read("A", (slice(0, 3), slice(0, 3))), FULL["A"][:3, :3])
    with BlockStore(path, FMT, writable=True) as store:
        assert [i for i in range(9) if store.is_done(i)] == [0, 4, 6]
        for i in range(9):
            if not store.is_done(i):
                _write(store, i)
    with BlockStore(path, FMT) as store:
        assert store.done.all()
        upper = np.triu(np.ones((7, 7), bool)) | (np.arange(7)[:, None] // 3 == np.arange(7)[None, :] // 3)
        A = store.read("A")
        np.testing.assert_array_equal(A[upper], FULL["A"][upper])
        np.testing.assert_array_equal(store.read("d", dtype=np.float32), FULL["d"].astype(np.float32))


def test_bad_writes_are_refused_and_leave_nothing_marked(tmp_path):
    path = _create(tmp_path / "s.h5")
    with BlockStore(path, FMT) as store:
        with pytest.raises(InvalidOptionError, match="opened for reading"):
            _write(store, 0)
    with BlockStore(path, FMT, writable=True) as store:
        with pytest.raises(ShapeError, match=r"needs values of shape \(3, 3\)"):
            store.write(0, [("A", (slice(0, 3), slice(0, 3)), np.ones((3, 2)))])
        with pytest.raises(ShapeError, match="outside"):
            store.write(0, [("A", (slice(5, 8), slice(0, 3)), np.ones((3, 3)))])
        with pytest.raises(ShapeError, match="unit-step slice"):
            store.write(0, [("A", (slice(0, 6, 2), slice(0, 3)), np.ones((3, 3)))])
        with pytest.raises(InvalidOptionError, match="out of range"):
            store.write(9, [])
        assert not store.done.any()


def test_an_interrupted_rewrite_is_not_left_marked(tmp_path, monkeypatch):
    path = _create(tmp_path / "s.h5")
    with BlockStore(path, FMT, writable=True) as store:
        _write(store, 0)
        _write(store, 1)
        calls = {"n": 0}
        original = os.fsync

        def crash_on_second(fd):
            calls["n"] += 1
            if calls["n"] == 2:  # the rewrite's values are being synced
                raise OSError("killed during fsync")
            original(fd)

        monkeypatch.setattr(os, "fsync", crash_on_second)
        with pytest.raises(OSError, match="killed"):
            store.write(0, [("A", (slice(0, 3), slice(0, 3)), np.zeros((3, 3)))])
        monkeypatch.undo()
        assert not store.is_done(0) and store.is_done(1)
    with BlockStore(path, FMT) as store:
        assert store.done.tolist()[:2] == [False, True]


def test_create_failure_leaves_no_file(tmp_path):
    with pytest.raises(InvalidOptionError, match="must hold"):
        _create(tmp_path / "s.h5", metadata={})  # "seed" is required
    with pytest.raises(InvalidOptionError, match="must not hold"):
        _create(tmp_path / "s.h5", metadata={"seed": 1, "n_tasks": 3})
    with pytest.raises(InvalidOptionError, match="over 4 GiB"):
        create_store(tmp_path / "s.h5", FMT, {"A": (10**5, 10**5), "d": (10**5,)}, "float64", 30000, 1, {"seed": 1})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- foreign and stale files


def test_foreign_and_stale_files_are_refused(tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(b"not hdf5")
    with pytest.raises(DataFormatError, match="not a readable HDF5 file.*delete it"):
        BlockStore(path, FMT)
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(DataFormatError, match=r"not a tfbdl test file \(missing 'format'\)"):
        BlockStore(path, FMT)
    _create(path, fmt=StoreFormat("other-blocks", 3, "other", ("A", "d"), ("seed",)))
    with pytest.raises(DataFormatError, match=r"not a tfbdl test file \(format 'other-blocks'\)"):
        BlockStore(path, FMT, writable=True)
    _create(path, fmt=StoreFormat("test-blocks", 2, "test", ("A", "d"), ("seed",)))
    with pytest.raises(DataFormatError, match="test-file format version 2, this tfbdl reads version 3"):
        BlockStore(path, FMT, writable=True)
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 3
        del f["d"]
    with pytest.raises(DataFormatError, match="missing 'd'"):
        BlockStore(path, FMT)


WRITER = """
import sys, time
from tfbdl.io.blocks import BlockStore, StoreFormat
store = BlockStore(sys.argv[1], StoreFormat("test-blocks", 3, "test", ("A", "d"), ("seed",)), writable=True)
print("open", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_readers_are_not(tmp_path):
    path = _create(tmp_path / "s.h5")
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "open"
        with pytest.raises(RunDirectoryError, match="open for writing in another process"):
            BlockStore(path, FMT, writable=True)
        with BlockStore(path, FMT) as store:
            assert store.n_tasks == len(TASKS)
    finally:
        child.kill()
        child.wait()


# --------------------------------------------------------------------------- SIGKILL between write and mark


STORE_CHILD = """
import sys
import numpy as np
from tfbdl.io.blocks import BlockStore, StoreFormat
fmt = StoreFormat("test-blocks", 3, "test", ("A", "d"), ("seed",))
full = {"A": np.arange(49, dtype=np.float64).reshape(7, 7) / 7, "d": np.arange(7.0) - 3}
tasks = [[(name, tuple(slice(*b) for b in bounds)) for name, bounds in regions] for regions in TASK_BOUNDS]
with BlockStore(sys.argv[1], fmt, writable=True) as store:
    for i, regions in enumerate(tasks):
        if not store.is_done(i):
            store.write(i, [(name, sel, full[name][sel]) for name, sel in regions])
"""


def test_sigkill_between_writing_and_marking_a_task(tmp_path):
    bounds = [[(name, [(s.start, s.stop) for s in sel]) for name, sel in regions] for regions in TASKS]
    script = f"TASK_BOUNDS = {bounds!r}\n" + STORE_CHILD
    reference, path = _create(tmp_path / "ref.h5"), _create(tmp_path / "s.h5")
    subprocess.run([sys.executable, "-c", script, str(reference)], check=True, timeout=120)
    killed = subprocess.run([sys.executable, "-c", script, str(path)], env={**os.environ, CRASH_AFTER_ENV: "4"},
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL
    raw = _values(path)
    assert raw[TASK_DONE].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0]  # the 4th was written, not marked
    assert np.array_equal(raw["A"][3:6, 3:6], FULL["A"][3:6, 3:6])  # (task 3's values are on disk)
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120)
    resumed, expected = _values(path), _values(reference)
    for name in expected:
        assert resumed[name].dtype == expected[name].dtype and resumed[name].tobytes() == expected[name].tobytes()


NTK_CHILD = """
import sys
import numpy as np
from tfbdl.io.blocks import BlockStore
from tfbdl.nn import mlp
from tfbdl.ntk.empirical import compute_ntk

writes = []
original = BlockStore.write
BlockStore.write = lambda self, *a, **k: writes.append(self.path.name) or original(self, *a, **k)
model = mlp((7, 5), 3, (4,), activation="tanh", seed=0)
x = np.load(sys.argv[1])
kw = dict(block_size=4, strategy="vmap_jacobian", output="full", progress=False)
for path, out in zip(sys.argv[2::2], sys.argv[3::2]):
    np.save(out, compute_ntk(model, x, path=None if path == "-" else path, **kw))
print(writes.count("part.h5"))
"""


def test_ntk_resumes_bitwise_after_a_sigkill_between_writing_and_marking(tmp_path):
    """An NTK computation killed right after writing its 3rd block (before marking it), then
    rerun, gives the matrix and file of an uninterrupted run bit for bit."""
    from tfbdl.ntk.store import read_ntk_file

    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)  # blocks 4 + 4 + 2
    np.save(tmp_path / "x.npy", x)
    part, whole = tmp_path / "part.h5", tmp_path / "whole.h5"

    def run(*args, env=None):
        return subprocess.run([sys.executable, "-c", NTK_CHILD, str(tmp_path / "x.npy"), *map(str, args)],
                              env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=600)

    killed = run(part, tmp_path / "never.npy", env={CRASH_AFTER_ENV: "3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    with h5py.File(part, "r") as f:
        assert f[TASK_DONE][()].tolist() == [1, 1, 0, 0, 0, 0]  # 6 upper blocks; the 3rd was written, not marked
    resumed = run(part, tmp_path / "resumed.npy", whole, tmp_path / "whole.npy", "-", tmp_path / "plain.npy")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.split()[-1] == "4"  # only the 4 unmarked blocks were computed again
    got = {name: np.load(tmp_path / f"{name}.npy") for name in ("resumed", "whole", "plain")}
    assert got["plain"].shape == (10, 10, 3, 3)
    for name in ("resumed", "whole"):
        assert got[name].dtype == got["plain"].dtype and got[name].tobytes() == got["plain"].tobytes(), name
    (a, attrs), (b, _) = read_ntk_file(part), read_ntk_file(whole)
    assert a.tobytes() == b.tobytes() and attrs["strategy"] == "vmap_jacobian"
    np.testing.assert_array_equal(a.astype(np.float32), got["plain"])
    with h5py.File(part, "r") as f, h5py.File(whole, "r") as g:
        assert f["ntk"][()].tobytes() == g["ntk"][()].tobytes()
        assert f[TASK_DONE][()].all()


def test_layout_can_be_written_in_place(tmp_path):
    """write_layout writes exactly the given path (for merging into a temp file); durable=False
    skips the syncs there."""
    path = tmp_path / "s.h5"
    write_layout(path, FMT, SHAPES, "float32", 3, len(TASKS), {"seed": 1})
    with BlockStore(path, FMT, writable=True) as store:
        for i in range(len(TASKS)):
            _write(store, i, durable=False)
    with BlockStore(path, FMT) as store:
        assert store.done.all() and store.read("A").dtype == np.float32


def test_crash_after_must_be_a_number(tmp_path, monkeypatch):
    path = _create(tmp_path / "s.h5")
    monkeypatch.setenv(CRASH_AFTER_ENV, "soon")
    with pytest.raises(InvalidOptionError, match=CRASH_AFTER_ENV):
        BlockStore(path, FMT, writable=True)
    with BlockStore(path, FMT) as store:  # readers ignore it
        assert store.n_tasks == len(TASKS)


def test_store_modules_load_neither_tensorflow_nor_h5py():
    code = textwrap.dedent("""
        import sys
        import tfbdl.io, tfbdl.io.blocks, tfbdl.ntk.store
        assert "tensorflow" not in sys.modules and "h5py" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
