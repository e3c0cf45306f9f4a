"""tfbdl: Bayesian deep learning research in TensorFlow, Keras 3, TFP and GPflow.

Importing ``tfbdl`` is cheap: TensorFlow is imported only by the modules that need it,
so the command line stays fast for ``--help`` and for its error paths.
"""

__version__ = "0.1.0"

from tfbdl.errors import (  # noqa: E402  (re-exported for users)
    ChecksumError,
    DataFormatError,
    DatasetNotFound,
    TfbdlError,
)

__all__ = ["ChecksumError", "DataFormatError", "DatasetNotFound", "TfbdlError", "__version__"]
