"""Hostile or broken files in a data folder or run folder (issue 17): gzip bombs, impossible IDX
headers and CIFAR arrays, CIFAR-10-C sets made from other images, unreadable notMNIST images,
and an --out where no run folder can be created. Every refusal is one line, naming the file."""

import errno
import gzip
import io
import os
import pickle
import struct
import tarfile
import tracemalloc
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

import tfbdl.io as tio
from tests.conftest import pin_checksum
from tfbdl.data import corruptions as C
from tfbdl.data import datasets, files, load_dataset, load_for_run
from tfbdl.data.formats import cifar, idx
from tfbdl.errors import ChecksumError, DataFormatError, RunDirectoryError

BOMB_BYTES = 200 << 20  # what the bomb expands to


def _gzip_bomb(path, expanded=BOMB_BYTES):
    """A valid gzip file of ``expanded`` zero bytes in about 1 KB per MiB, built without ever
    holding the expanded bytes: one fully flushed deflate segment of 1 MiB of zeros, repeated."""
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(expanded >> 20):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, expanded & 0xFFFFFFFF)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + segment * (expanded >> 20) + deflate.flush() + trailer)
    return path


def _peak_while(call):
    """(the exception ``call`` raised, peak bytes allocated meanwhile, by tracemalloc)."""
    tracemalloc.start()
    try:
        call()
    except Exception as error:  # noqa: BLE001 (returned to the test)
        raised = error
    else:
        raised = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return raised, peak


# ---------------------------------------------------------------- 1. gzip bombs
def test_a_gzip_bomb_in_place_of_an_official_file_is_refused_without_expanding_it(isolated_data, monkeypatch):
    bomb = _gzip_bomb(isolated_data / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz")
    assert bomb.stat().st_size < 300_000  # 200 MB of zeros in about 200 KB
    remote = datasets.DATASETS["fashion_mnist"].files["test_labels"]
    assert remote.content_size == 10008

    error, peak = _peak_while(lambda: files.verify_content(bomb, remote))
    assert isinstance(error, ChecksumError)
    message = str(error)
    assert "\n" not in message and str(bomb) in message
    assert "decompresses to more than 10,008 bytes" in message and "t10k-labels-idx1-ubyte.gz holds 10,008" in message
    assert peak < 4 << 20, f"peak {peak:,} bytes while refusing a {BOMB_BYTES:,}-byte bomb"

    # The same through the loader, with small genuine-looking images pinned as official.
    images = idx.encode_idx(np.zeros((3, 28, 28), np.uint8))
    (bomb.parent / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    pin_checksum(monkeypatch, "fashion_mnist", "test_images", images)
    error, peak = _peak_while(lambda: load_dataset("fashion_mnist", "test", data_dir=isolated_data, download=False))
    assert isinstance(error, ChecksumError) and "t10k-labels-idx1-ubyte.gz" in str(error)
    assert peak < 4 << 20


def test_an_image_file_bomb_stops_at_the_official_size(isolated_data):
    bomb = _gzip_bomb(isolated_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    remote = datasets.DATASETS["mnist"].files["test_images"]
    error, peak = _peak_while(lambda: files.verify_content(bomb, remote))
    assert isinstance(error, ChecksumError) and "more than 7,840,016 bytes" in str(error)
    assert peak < 3 * remote.content_size < BOMB_BYTES / 8


def test_an_archive_known_only_by_its_md5_is_not_even_decompressed(isolated_data):
    bomb = _gzip_bomb(isolated_data / "cifar10" / "cifar-10-python.tar.gz")
    remote = datasets.DATASETS["cifar10"].files["archive"]
    error, peak = _peak_while(lambda: files.verify_content(bomb, remote))
    assert isinstance(error, ChecksumError) and "MD5 of its bytes" in str(error) and str(bomb) in str(error)
    assert peak < 2 << 20


def test_without_a_recorded_size_the_general_cap_applies(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_UNKNOWN_CONTENT", 4 << 20)
    bomb = _gzip_bomb(tmp_path / "x.gz", expanded=16 << 20)
    remote = files.RemoteFile("x.gz", None, content_sha256="0" * 64)
    with pytest.raises(ChecksumError, match="more than 4,194,304 bytes but at most 4,194,304 are allowed"):
        files.verify_content(bomb, remote)


def test_an_uncompressed_file_larger_than_the_official_content_is_not_read(isolated_data):
    path = isolated_data / "mnist" / "t10k-labels-idx1-ubyte"
    path.parent.mkdir()
    path.write_bytes(bytes(20000))
    with pytest.raises(ChecksumError, match=r"is 20,000 bytes, more than 10,008 bytes"):
        files.verify_content(path, datasets.DATASETS["mnist"].files["test_labels"])


def test_streamed_verification_still_accepts_the_real_files(shared_data_dir):
    remote = datasets.DATASETS["fashion_mnist"].files["test_labels"]
    content = files.verify_content(shared_data_dir / "fashion_mnist" / remote.filename, remote)
    assert len(content) == remote.content_size == 10008


# ---------------------------------------------------------------- 2. IDX headers and CIFAR arrays
def _idx_header(type_code, shape):
    return struct.pack(">HBB", 0, type_code, len(shape)) + struct.pack(f">{len(shape)}i", *shape)


@pytest.mark.parametrize("data, needle", [
    (_idx_header(8, (60000, 28, 28)) + bytes(100), r"\(47,040,000 bytes of data\) but the file holds 100 bytes"),
    (_idx_header(8, (2**31 - 1, 2**31 - 1, 2**31 - 1)) + bytes(16), "truncated or corrupt"),
    (_idx_header(8, (2**30, 2**30, 16)), "truncated or corrupt"),  # 2**64 bytes: wraps to 0 in int64
    (_idx_header(8, (-1, 28, 28)) + bytes(784), "every size must be positive"),
    (_idx_header(8, (0, 28, 28)), "every size must be positive"),
    (_idx_header(8, (3,)) + bytes(4), "trailing bytes"),
    (struct.pack(">HBB", 0, 8, 200) + bytes(800), "announces 200 dimensions"),
])
def test_impossible_idx_headers_are_refused_before_any_allocation(data, needle):
    with pytest.raises(DataFormatError, match=needle) as caught:
        idx.parse_idx(data, source="crafted")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("crafted: ")


def test_a_crafted_idx_file_fails_the_load_with_one_line(isolated_data, monkeypatch):
    folder = isolated_data / "mnist"
    folder.mkdir()
    crafted = {"test_images": _idx_header(8, (2**30, 2**30, 16)), "test_labels": idx.encode_idx(np.zeros(3, np.uint8))}
    for role, content in crafted.items():
        (folder / datasets.DATASETS["mnist"].files[role].filename).write_bytes(gzip.compress(content))
        pin_checksum(monkeypatch, "mnist", role, content)
    with pytest.raises(DataFormatError, match="test images: header says shape"):
        load_dataset("mnist", "test", data_dir=isolated_data, download=False)


class _ArrayClaiming:
    """Pickles as a numpy array whose state announces ``shape`` but carries ``raw`` bytes."""

    def __init__(self, shape, raw):
        self.shape, self.raw = shape, raw

    def __reduce__(self):
        function, arguments, state = np.zeros(1, np.uint8).__reduce__()
        version, _, dtype, fortran, _ = state
        return function, arguments, (version, self.shape, dtype, fortran, self.raw)


def _cifar_tar(batch: dict) -> bytes:
    buffer = io.BytesIO()
    payload = pickle.dumps(batch, protocol=3)
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ["cifar-10-batches-py/test_batch"]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


@pytest.mark.parametrize("batch, needle", [
    ({b"data": _ArrayClaiming((2, 3072), bytes(3072)), b"labels": [0, 1]}, "buffer size does not match"),
    ({b"data": _ArrayClaiming((1, 3072), bytes(6144)), b"labels": [0]}, "buffer size does not match"),
    ({b"data": _ArrayClaiming((10**12, 3072), bytes(16)), b"labels": [0]}, "not a readable pickle"),
    ({b"data": _ArrayClaiming((2**62, 2**62), b""), b"labels": [0]}, "announces more data"),
    ({b"data": _ArrayClaiming((-1, 3072), bytes(3072)), b"labels": [0]}, "not a readable pickle"),
    ({b"data": _ArrayClaiming((0, 3072), b""), b"labels": []}, r"N >= 1, found uint8 \(0, 3072\)"),
    ({b"data": _ArrayClaiming((2, 3072), bytes(6144)), b"labels": [0, 1, 2]}, "2 images but 3 labels"),
    ({b"data": _ArrayClaiming((2, 3072), bytes(6144)), b"labels": [b"a", b"b"]}, "'labels' must be integers"),
    ({b"data": [[0] * 3072], b"labels": [0]}, "found list"),
])
def test_cifar_batches_whose_arrays_do_not_match_their_shapes_are_refused(isolated_data, monkeypatch, batch, needle):
    folder = isolated_data / "cifar10"
    folder.mkdir()
    archive = _cifar_tar(batch)
    (folder / "cifar-10-python.tar.gz").write_bytes(gzip.compress(archive))
    pin_checksum(monkeypatch, "cifar10", "archive", archive)
    with pytest.raises(DataFormatError, match=needle) as caught:
        load_dataset("cifar10", "test", data_dir=isolated_data, download=False)
    assert "\n" not in str(caught.value) and "cifar-10-batches-py/test_batch" in str(caught.value)


def test_a_well_formed_crafted_batch_still_loads():
    rows = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    batch = cifar.load_batch_pickle(pickle.dumps({b"data": rows, b"labels": [3, 4]}, protocol=3))
    images, labels = cifar.batch_to_arrays(batch, "labels", "x")
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [3, 4]


# ---------------------------------------------------------------- 3. CIFAR-10-C sets and their source images
def test_a_stored_corruption_set_made_from_other_images_is_recomputed(tmp_path, capsys):
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    second = first.copy()
    second[1, 5, 5, 0] ^= 1  # one pixel differs: same shape, labels and seed
    labels, out = np.array([3, 7]), tmp_path / "corrupted"
    paths = C.make_corrupted_set(first, labels, out, names=["contrast"], severities=(1,), seed=2, progress=False)
    path = paths["contrast"]
    with np.load(path) as archive:
        assert str(archive["source_sha256"]) == C.images_fingerprint(first) != C.images_fingerprint(second)
    made = path.stat().st_mtime_ns
    C.make_corrupted_set(first, labels, out, names=["contrast"], severities=(1,), seed=2, progress=False)
    assert path.stat().st_mtime_ns == made and "recomputing" not in capsys.readouterr().err  # same images: reused

    C.make_corrupted_set(second, labels, out, names=["contrast"], severities=(1,), seed=2, progress=False)
    assert "contrast in" in capsys.readouterr().err
    with np.load(path) as archive:
        np.testing.assert_array_equal(archive["severity_1"], C.corrupt(second, "contrast", 1, seed=2))
        assert str(archive["source_sha256"]) == C.images_fingerprint(second)

    # A set stored without a fingerprint (an older version) cannot prove its source: redone too.
    with np.load(path) as archive:
        old = {key: archive[key] for key in archive.files if key != "source_sha256"}
    np.savez(path, **old)
    C.make_corrupted_set(second, labels, out, names=["contrast"], severities=(1,), seed=2, progress=False)
    assert "other source images" in capsys.readouterr().err
    with np.load(path) as archive:
        assert "source_sha256" in archive.files


# ---------------------------------------------------------------- 4. unreadable notMNIST images are counted
def _png(value):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((28, 28), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_unreadable_notmnist_images_are_counted_in_the_provenance(isolated_data, monkeypatch, capsys):
    members = {f"notMNIST_small/{letter}/{letter}{k}.png": _png(k) for letter in "ABCDEFGHIJ" for k in range(5)}
    members["notMNIST_small/C/broken.png"] = _png(9)[:40]  # a PNG cut short
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    (isolated_data / "notmnist").mkdir()
    (isolated_data / "notmnist" / "notMNIST_small.tar.gz").write_bytes(gzip.compress(buffer.getvalue()))
    pin_checksum(monkeypatch, "notmnist", "archive", buffer.getvalue())
    note = "1 unreadable notMNIST file was skipped (notMNIST_small/C/broken.png)"

    loaded = load_for_run("notmnist", "all", "tiny", data_dir=isolated_data)
    assert loaded.provenance["source"] == "full" and loaded.labels.size == 50
    assert loaded.provenance["notes"] == [note] and note in loaded.describe()
    assert f"note: {note}" in capsys.readouterr().err

    notes = []
    load_dataset("notmnist", "train", data_dir=isolated_data, notes=notes)
    assert notes == [note] and capsys.readouterr().err == ""
    load_dataset("notmnist", "test", data_dir=isolated_data)  # no list given: said on stderr
    assert f"note: {note}" in capsys.readouterr().err


# ---------------------------------------------------------------- 5. --out where no run folder can be made
def _swag(out):
    from tfbdl.cli.main import cli

    return CliRunner().invoke(cli, ["bdl", "swag", "--scale", "tiny", "--out", str(out)])


def _one_error_line(result):
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1
    return lines[0]


def test_an_out_path_under_a_file_is_one_line_error(tmp_path):
    from tfbdl.errors import RunDirectoryError
    from tfbdl.io import RunDir

    blocker = tmp_path / "passwd"
    blocker.write_text("not a folder\n")
    # the command refuses it while parsing --out (usage error, exit code 2), before any work
    result = _swag(blocker / "x")
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "'--out'" in line and "is a file, not a folder" in line
    # and the library says the same in one line when called directly
    with pytest.raises(RunDirectoryError) as error:
        RunDir.open(blocker / "x", "bdl-swag", "run", {"a": 1})
    assert f"cannot create the run folder {blocker / 'x'}" in str(error.value)
    assert f"{blocker} is a file, not a folder; choose another --out" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_read_only_out_folder_is_one_line_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: a 0o555 folder is still writable")
        line = _one_error_line(_swag(locked / "runs"))
        assert f"cannot create the run folder {locked / 'runs'}" in line and "choose an --out you can write to" in line
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("error, needle", [
    (PermissionError(errno.EACCES, "Permission denied"), "Permission denied .*choose an --out you can write to"),
    (OSError(errno.EROFS, "Read-only file system"), "Read-only file system .*choose an --out you can write to"),
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device .*choose another --out"),
])
def test_every_os_error_while_creating_the_run_folder_is_a_run_directory_error(tmp_path, monkeypatch, error, needle):
    def refuse(path, obj):
        raise error

    monkeypatch.setattr(tio.rundir, "atomic_write_json", refuse)
    with pytest.raises(RunDirectoryError, match="cannot create the run folder .*" + needle) as caught:
        tio.RunDir.open(tmp_path / "out", "exp", "run", {"a": 1})
    assert "\n" not in str(caught.value)
