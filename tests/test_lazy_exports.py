"""The packages' exports: a sorted ``__all__`` whose names all resolve, loaded lazily where they
need TensorFlow, so that importing a package loads no TensorFlow; no name collides with a package."""

import importlib
import subprocess
import sys

import pytest

from tfbdl.lazy import lazy_exports

PACKAGES = ("bayes", "data", "dwp", "gp", "io", "kernels", "nn", "ntk", "train")
HEAVY = ("tensorflow", "gpflow", "keras", "tensorflow_probability")


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted(package):
    module = importlib.import_module(f"tfbdl.{package}")
    assert hasattr(module, "__all__"), f"tfbdl.{package} declares no __all__"
    assert list(module.__all__) == sorted(module.__all__), f"tfbdl.{package}.__all__ is not sorted"
    assert len(set(module.__all__)) == len(module.__all__), f"tfbdl.{package}.__all__ repeats a name"


@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_package_loads_no_tensorflow(package):
    code = (f"import sys, tfbdl.{package}; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"import tfbdl.{package} loads {result.stdout.strip()}"


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


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package):
    module = importlib.import_module(f"tfbdl.{package}")
    for name in getattr(module, "__all__", ()):
        assert getattr(module, name) is not None, (module.__name__, name)


@pytest.mark.parametrize("package", PACKAGES)
def test_a_lazy_name_is_its_modules_public_name(package):
    """A lazily exported name is listed in the ``__all__`` of the module it is loaded from."""
    module = importlib.import_module(f"tfbdl.{package}")
    for name, source in getattr(module, "_LAZY", {}).items():
        assert name in importlib.import_module(source).__all__, (module.__name__, name, source)


def test_bayes_exports_every_posterior():
    import tfbdl.bayes

    for source in ("ensembles", "hmc", "laplace", "predictive", "priors", "sgld", "swag", "temperature", "vi"):
        missing = set(importlib.import_module(f"tfbdl.bayes.{source}").__all__) - set(tfbdl.bayes.__all__)
        assert not missing, (source, missing)


def test_kernel_layer_bases_are_exported():
    import tfbdl.kernels
    from tfbdl.kernels import layers

    assert set(layers.__all__) <= set(tfbdl.kernels.__all__)
    for base in ("Layer", "LinearLayer", "AffineLayer", "Nonlinearity", "MapState", "PairIndex"):
        assert getattr(tfbdl.kernels, base) is getattr(layers, base)


def test_no_exported_name_collides_with_a_package():
    import gpflow

    import tfbdl.kernels

    for package in PACKAGES:
        module = importlib.import_module(f"tfbdl.{package}")
        clashes = set(getattr(module, "__all__", ())) & set(PACKAGES)
        assert not clashes, (module.__name__, clashes)
    assert not set(tfbdl.kernels.__all__) & set(gpflow.kernels.__all__)


def test_an_exported_name_wins_over_its_submodule():
    """tfbdl.nn exports the function fconv and has the submodule tfbdl.nn.fconv (imported first here)."""
    code = ("import tfbdl.nn.fconv, tfbdl.nn.vgg, tfbdl.nn.mlp; from tfbdl.nn import fconv, vgg, mlp; "
            "import tfbdl.nn as nn; print(callable(fconv), callable(vgg), callable(mlp), callable(nn.fconv))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "True"]
