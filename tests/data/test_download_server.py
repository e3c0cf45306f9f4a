"""Downloads against a real HTTP server on 127.0.0.1 that serves files in the official formats:
success, resume of an interrupted download, a corrupt body, a 404, a stalled server, and the
tiny/smoke fallback to the embedded data when a download fails."""

import dataclasses
import gzip
import http.server
import threading
import time
import urllib.error

import numpy as np
import pytest

from tests.conftest import pin_checksum
from tfbdl.data import datasets, files, load_dataset, load_for_run
from tfbdl.data.formats import idx
from tfbdl.errors import ChecksumError, DatasetNotFound

ROLES = ("train_images", "train_labels", "test_images", "test_labels")


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes) with Range support; ``server.behaviour`` (path ->
    'cut-once' | 'stall' | 'no-range') makes a file misbehave."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        behaviour = server.behaviour.get(self.path)
        start = 0
        ranged = self.headers.get("Range")
        if ranged and behaviour != "no-range":
            start = int(ranged.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if behaviour == "stall":
            server.release.wait(10)  # send nothing until the test ends
            return
        if behaviour == "cut-once" and not ranged:
            self.wfile.write(body[start:start + len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection breaks half-way
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 (a free port), stopped after the test."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.behaviour, httpd.requests = {}, {}, []
    httpd.release = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


def _serve_mnist(monkeypatch, server, *, images=6, mirror=False) -> dict[str, bytes]:
    """Point the registry's MNIST at ``server`` (official file names, gzip IDX files made here,
    their checksums pinned) and return role -> served bytes."""
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (images, 28, 28), dtype=np.uint8),
              "train_labels": np.arange(images, dtype=np.uint8) % 10,
              "test_images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "test_labels": np.array([4, 5, 6, 7], np.uint8)}
    payloads = {}
    for role, array in arrays.items():
        content = idx.encode_idx(array)
        pin_checksum(monkeypatch, "mnist", role, content)
        payloads[role] = gzip.compress(content)
    spec = datasets.DATASETS["mnist"]
    remotes = {}
    for role, remote in spec.files.items():
        if mirror:  # the official address refuses (404); the mirror has the file
            url, mirrors = server.base + "official/" + remote.filename, (server.base + "mirror/" + remote.filename,)
            server.files["/mirror/" + remote.filename] = payloads[role]
        else:
            url, mirrors = server.base + remote.filename, ()
            server.files["/" + remote.filename] = payloads[role]
        remotes[role] = dataclasses.replace(remote, url=url, mirrors=mirrors)
    monkeypatch.setitem(datasets.DATASETS, "mnist", dataclasses.replace(spec, files=remotes))
    monkeypatch.setattr(files, "open_url", _real_open_url)
    return payloads


_real_open_url = files.open_url


def test_a_download_is_verified_renamed_into_place_and_read(isolated_data, monkeypatch, server):
    payloads = _serve_mnist(monkeypatch, server)
    images, labels = load_dataset("mnist", "train", data_dir=isolated_data, progress=False)
    assert images.shape == (6, 28, 28, 1) and labels.tolist() == [0, 1, 2, 3, 4, 5]
    folder = isolated_data / "mnist"
    assert (folder / "train-images-idx3-ubyte.gz").read_bytes() == payloads["train_images"]
    assert [path for path, _ in server.requests] == ["/train-images-idx3-ubyte.gz", "/train-labels-idx1-ubyte.gz"]
    assert not list(folder.glob(".*.part"))
    load_dataset("mnist", "train", data_dir=isolated_data, progress=False)  # now read from disk
    assert len(server.requests) == 2


def test_the_official_address_failing_falls_back_to_the_mirror(isolated_data, monkeypatch, server):
    _serve_mnist(monkeypatch, server, mirror=True)
    load_dataset("mnist", "test", data_dir=isolated_data, progress=False)
    assert [path for path, _ in server.requests][:2] == ["/official/t10k-images-idx3-ubyte.gz",
                                                        "/mirror/t10k-images-idx3-ubyte.gz"]


def test_a_connection_broken_half_way_is_resumed_with_a_range_request(isolated_data, monkeypatch, server):
    payloads = _serve_mnist(monkeypatch, server, images=400)
    server.behaviour["/train-images-idx3-ubyte.gz"] = "cut-once"
    images, _ = load_dataset("mnist", "train", data_dir=isolated_data, progress=False)
    assert images.shape[0] == 400
    asked = [r for r in server.requests if r[0] == "/train-images-idx3-ubyte.gz"]
    half = len(payloads["train_images"]) // 2
    assert asked == [("/train-images-idx3-ubyte.gz", None), ("/train-images-idx3-ubyte.gz", f"bytes={half}-")]
    assert (isolated_data / "mnist" / "train-images-idx3-ubyte.gz").read_bytes() == payloads["train_images"]


def test_a_partial_file_left_by_a_killed_process_is_continued(isolated_data, monkeypatch, server):
    payloads = _serve_mnist(monkeypatch, server, images=400)
    folder = isolated_data / "mnist"
    folder.mkdir()
    body = payloads["test_images"]
    (folder / ".t10k-images-idx3-ubyte.gz.part").write_bytes(body[:1000])
    load_dataset("mnist", "test", data_dir=isolated_data, progress=False)
    assert ("/t10k-images-idx3-ubyte.gz", "bytes=1000-") in server.requests
    assert (folder / "t10k-images-idx3-ubyte.gz").read_bytes() == body


def test_a_server_that_ignores_range_restarts_the_file_cleanly(isolated_data, monkeypatch, server):
    payloads = _serve_mnist(monkeypatch, server)
    folder = isolated_data / "mnist"
    folder.mkdir()
    (folder / ".t10k-labels-idx1-ubyte.gz.part").write_bytes(b"stale bytes of another attempt")
    server.behaviour["/t10k-labels-idx1-ubyte.gz"] = "no-range"
    load_dataset("mnist", "test", data_dir=isolated_data, progress=False)
    assert (folder / "t10k-labels-idx1-ubyte.gz").read_bytes() == payloads["test_labels"]


def test_a_corrupt_body_is_refused_by_checksum_and_deleted(isolated_data, monkeypatch, server):
    _serve_mnist(monkeypatch, server)
    server.files["/t10k-labels-idx1-ubyte.gz"] = gzip.compress(b"not the labels")
    with pytest.raises(ChecksumError, match="does not match the official file"):
        load_dataset("mnist", "test", data_dir=isolated_data, progress=False)
    assert sorted(p.name for p in (isolated_data / "mnist").iterdir() if not p.name.endswith(".lock")) == [
        "t10k-images-idx3-ubyte.gz"]


def test_a_404_is_a_one_line_error_naming_the_file_and_where_to_put_it(isolated_data, monkeypatch, server):
    _serve_mnist(monkeypatch, server)
    del server.files["/train-labels-idx1-ubyte.gz"]
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("mnist", "train", data_dir=isolated_data, progress=False)
    message = str(error.value)
    assert "\n" not in message and "HTTP 404" in message and "train-labels-idx1-ubyte.gz" in message
    assert str(isolated_data / "mnist") in message


def test_a_failed_download_leaves_the_data_folder_as_it_found_it(isolated_data, monkeypatch, server):
    _serve_mnist(monkeypatch, server)
    server.files.clear()  # every file answers 404
    with pytest.raises(DatasetNotFound, match="HTTP 404"):
        load_dataset("mnist", "test", data_dir=isolated_data, progress=False)
    assert list(isolated_data.iterdir()) == []  # no mnist/ folder, no lock file
    (isolated_data / "mnist").mkdir()
    with pytest.raises(DatasetNotFound, match="HTTP 404"):
        load_dataset("mnist", "test", data_dir=isolated_data, progress=False)
    assert list((isolated_data / "mnist").iterdir()) == []  # an existing folder is kept, emptied of litter


def test_a_stalled_server_times_out_with_a_clear_error(isolated_data, monkeypatch, server):
    _serve_mnist(monkeypatch, server)
    server.behaviour["/train-images-idx3-ubyte.gz"] = "stall"
    start = time.monotonic()
    with pytest.raises(DatasetNotFound, match=r"sent nothing for 0\.5 s \(stalled\)"):
        load_dataset("mnist", "train", data_dir=isolated_data, progress=False, timeout=0.5)
    assert time.monotonic() - start < 5


def test_smoke_downloads_what_is_missing_when_online(isolated_data, monkeypatch, server):
    _serve_mnist(monkeypatch, server)
    loaded = load_for_run("mnist", "test", "smoke", data_dir=isolated_data)
    assert loaded.provenance["source"] == "full (downloaded)" and loaded.labels.tolist() == [4, 5, 6, 7]


def test_smoke_falls_back_to_the_embedded_data_within_seconds_when_the_download_fails(isolated_data, monkeypatch,
                                                                                     server):
    _serve_mnist(monkeypatch, server)
    server.behaviour["/train-images-idx3-ubyte.gz"] = "stall"
    monkeypatch.setattr(files, "FALLBACK_TIMEOUT", 0.5)
    start = time.monotonic()
    loaded = load_for_run("mnist", "train", "smoke", data_dir=isolated_data)
    assert time.monotonic() - start < 5
    p = loaded.provenance
    assert (p["dataset"], p["source"]) == ("mnist_sample", "embedded subset")
    assert "could not be downloaded" in p["reason"] and "stalled" in p["reason"]
    assert "could not be downloaded" in loaded.describe()


def test_an_unreachable_host_is_tried_once_per_process(isolated_data, monkeypatch):
    asked = []

    def unreachable(url, timeout=60.0, headers=None):
        asked.append(url)
        raise OSError("Name or service not known")

    monkeypatch.setattr(files, "open_url", unreachable)
    spec = datasets.DATASETS["fashion_mnist"]
    monkeypatch.setitem(datasets.DATASETS, "fashion_mnist", dataclasses.replace(
        spec, files={r: dataclasses.replace(f, mirrors=()) for r, f in spec.files.items()}))
    for split in ("train", "test"):
        loaded = load_for_run("fashion_mnist", split, "tiny", data_dir=isolated_data)
        assert loaded.provenance["source"] == "embedded subset"
        assert "Name or service not known" in loaded.provenance["reason"]
    assert len(asked) == 1


def test_offline_switch_never_touches_the_network(isolated_data, monkeypatch, server):
    _serve_mnist(monkeypatch, server)
    monkeypatch.setenv("TFBDL_OFFLINE", "1")
    with pytest.raises(DatasetNotFound, match="TFBDL_OFFLINE"):
        load_dataset("mnist", "train", data_dir=isolated_data)
    loaded = load_for_run("mnist", "train", "smoke", data_dir=isolated_data)
    assert "downloads are off" in loaded.provenance["reason"]
    assert server.requests == []


def test_paper_scale_stops_with_one_line_saying_what_to_fetch_and_where(isolated_data, monkeypatch, server):
    _serve_mnist(monkeypatch, server)
    server.files.clear()
    with pytest.raises(DatasetNotFound) as error:
        load_for_run("mnist", "train", "paper", data_dir=isolated_data)
    message = str(error.value)
    assert "\n" not in message and "train-images-idx3-ubyte.gz" in message and "put it in" in message


def test_offline_error_names_file_address_and_folder(isolated_data):
    with pytest.raises(DatasetNotFound) as error:
        load_dataset("cifar10", "train", data_dir=isolated_data, progress=False)
    message = str(error.value)
    assert "cifar-10-python.tar.gz" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert str(isolated_data / "cifar10") in message
    assert not [p for p in (isolated_data / "cifar10").glob("*") if not p.name.endswith(".lock")]


def test_a_silent_host_costs_one_timeout_per_process(isolated_data, monkeypatch):
    asked = []

    def silent(url, timeout=60.0, headers=None):
        asked.append(url)
        raise urllib.error.URLError(TimeoutError("timed out"))

    monkeypatch.setattr(files, "open_url", silent)
    spec = datasets.DATASETS["mnist"]
    monkeypatch.setitem(datasets.DATASETS, "mnist", dataclasses.replace(
        spec, files={r: dataclasses.replace(f, mirrors=()) for r, f in spec.files.items()}))
    train = load_for_run("mnist", "train", "smoke", data_dir=isolated_data)
    test = load_for_run("mnist", "test", "smoke", data_dir=isolated_data)
    assert len(asked) == 1  # the other three files did not wait for the same host again
    assert f"sent nothing for {files.FALLBACK_TIMEOUT:g} s" in train.provenance["reason"]
    assert "stalled" in test.provenance["reason"]
