"""Datasets (find, download, verify, parse), transforms, label noise and input pipelines.

The public loading API is importable from here without importing TensorFlow:
``load_dataset``, ``load_for_run``, ``load_embedded``, ``fetch``, ``DATASETS``.
"""

from tfbdl.data.datasets import DATASETS, fetch, get_spec, is_available, load_dataset, locate
from tfbdl.data.sources import EMBEDDED, SCALES, LoadedData, load_embedded, load_for_run

__all__ = ["DATASETS", "EMBEDDED", "LoadedData", "SCALES", "fetch", "get_spec", "is_available", "load_dataset",
           "load_embedded", "load_for_run", "locate"]
