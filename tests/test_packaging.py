"""What an install puts on the path: the wheel holds the package ``tfbdl`` and nothing else at the
top level (no ``tests``, no ``bench``, no second package), and its console script is ``tfbdl``."""

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built from a copy of the packaging files and the package (the checkout stays clean)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "tfbdl", src / "tfbdl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(REPO / "tests", src / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = out.glob("tfbdl-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_puts_only_tfbdl_at_the_top_level(wheel):
    top = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"tfbdl"}
    names = set(wheel.namelist())
    for module in ("tfbdl/cli/main.py", "tfbdl/cli/__main__.py", "tfbdl/cli/bdl/swag.py",
                   "tfbdl/io/blocks.py", "tfbdl/data/embedded/mnist_sample.npz"):
        assert module in names, module


def test_the_console_script_is_tfbdl(wheel):
    (entry,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry).decode())
    assert dict(parser["console_scripts"]) == {"tfbdl": "tfbdl.cli.main:main"}
