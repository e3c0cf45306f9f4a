"""The model registry: names the command line can pass to :func:`build_model`."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import keras

from tfbdl.errors import InvalidOptionError
from tfbdl.nn.fconv import fconv
from tfbdl.nn.lenet import lenet5
from tfbdl.nn.mlp import mlp
from tfbdl.nn.ntk_lenet import ntk_lenet
from tfbdl.nn.preresnet import preresnet20
from tfbdl.nn.resnet18 import resnet18
from tfbdl.nn.vgg import vgg16, vgg16_bn

__all__ = ["MODELS", "build_model"]


def _mlp_entry(num_classes: int = 1, input_shape=(1,), *, hidden_widths, activation="relu",
               output_activation=None, seed: int | None = None) -> keras.Model:
    """:func:`tfbdl.nn.mlp` with the registry's ``num_classes`` as its number of outputs."""
    return mlp(hidden_widths, num_classes, input_shape, activation, output_activation=output_activation, seed=seed)


def _ntk_lenet_entry(num_classes: int = 1, input_shape=(32, 32, 3), *, widths=(6, 16, 120, 84), activation="relu",
                     seed: int | None = None) -> keras.Model:
    """:func:`tfbdl.nn.ntk_lenet` with the registry's ``num_classes`` as its number of outputs."""
    return ntk_lenet(num_classes, input_shape, widths=widths, activation=activation, seed=seed)


#: Name -> factory ``f(num_classes, input_shape, **options) -> keras.Model``.
MODELS: dict[str, Callable[..., keras.Model]] = {
    "lenet5": lenet5,
    "vgg16": vgg16,
    "vgg16_bn": vgg16_bn,
    "preresnet20": preresnet20,
    "resnet18": resnet18,
    "mlp": _mlp_entry,
    "fconv": fconv,
    "ntk_lenet": _ntk_lenet_entry,
}


def build_model(name: str, num_classes: int | None = None, input_shape=None, **options) -> keras.Model:
    """Build the registered model ``name`` (see :data:`MODELS`).

    ``num_classes`` and ``input_shape`` default to the factory's own defaults when ``None``;
    ``options`` are the factory's keyword options (e.g. ``seed``, ``dropout``; ``hidden_widths``
    is required for ``"mlp"``). Names are case-insensitive and ``-`` may stand for ``_``.

    Raises:
        InvalidOptionError: unknown name, or an option the model does not take or is missing.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in MODELS:
        raise InvalidOptionError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    factory = MODELS[key]
    kwargs = dict(options)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    signature = inspect.signature(factory)
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        accepted = ", ".join(p for p in signature.parameters if p not in ("num_classes", "input_shape"))
        raise InvalidOptionError(f"model {key!r}: {err}; its options are: {accepted}") from None
    return factory(**kwargs)
