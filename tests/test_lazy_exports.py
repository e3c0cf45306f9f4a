"""The packages' lazy exports: importing a package loads no TensorFlow; a name loads on first use."""

import subprocess
import sys

import pytest

from tfbdl.lazy import lazy_exports


def test_importing_the_packages_loads_no_tensorflow():
    code = ("import sys, tfbdl.bayes, tfbdl.gp, tfbdl.ntk, tfbdl.train, tfbdl.train.schedules; "
            "print(sorted(m for m in ('tensorflow', 'gpflow', 'keras', 'tensorflow_probability') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_name_is_loaded_on_first_use_and_cached(monkeypatch):
    import types

    package = types.ModuleType("fake_package")
    monkeypatch.setitem(sys.modules, "fake_package", package)
    package.__getattr__, package.__dir__ = lazy_exports("fake_package", {"sqrt": "math", "dumps": "json"})
    assert "sqrt" not in vars(package)
    assert package.__getattr__("sqrt")(9.0) == 3.0
    assert "sqrt" in vars(package)  # cached in the namespace: __getattr__ is not called again
    assert {"sqrt", "dumps"} <= set(package.__dir__())
    with pytest.raises(AttributeError, match="'fake_package' has no attribute 'nope'"):
        package.__getattr__("nope")


def test_every_lazy_name_resolves():
    import tfbdl.bayes
    import tfbdl.gp
    import tfbdl.ntk
    import tfbdl.train

    for package in (tfbdl.bayes, tfbdl.gp, tfbdl.ntk, tfbdl.train):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)


def test_an_exported_name_wins_over_its_submodule():
    """tfbdl.nn exports the function fconv and has the submodule tfbdl.nn.fconv (imported first here)."""
    code = ("import tfbdl.nn.fconv, tfbdl.nn.vgg, tfbdl.nn.mlp; from tfbdl.nn import fconv, vgg, mlp; "
            "import tfbdl.nn as nn; print(callable(fconv), callable(vgg), callable(mlp), callable(nn.fconv))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "True"]

