"""Named exceptions for errors a user can cause.

Every one derives from :class:`TfbdlError`; the command line prints its message on one line
and exits non-zero without a traceback, so each message must say what to do next.
:class:`JitterWarning` is the one warning: a matrix needed jitter to be factorised.
"""

__all__ = [
    "ChecksumError",
    "DataFormatError",
    "DatasetNotFound",
    "InvalidOptionError",
    "JitterWarning",
    "RunDirectoryError",
    "ShapeError",
    "TfbdlError",
    "UnsafePickleError",
]


class TfbdlError(Exception):
    """Base class of the errors a user can cause and fix."""


class DatasetNotFound(TfbdlError):
    """A dataset file is absent and could not be downloaded."""


class ChecksumError(TfbdlError):
    """A dataset file's content differs from the official release; nothing was parsed."""


class DataFormatError(TfbdlError):
    """A file does not follow the format it claims (bad magic number, truncated, wrong shape)."""


class UnsafePickleError(DataFormatError):
    """A pickle asked for something the CIFAR batch format never needs; it was not loaded."""


class InvalidOptionError(TfbdlError):
    """An option or argument value is out of its allowed range."""


class RunDirectoryError(TfbdlError):
    """A run directory is inconsistent with the command that tries to resume it."""


class ShapeError(TfbdlError, ValueError):
    """Arrays given together do not have matching or expected shapes."""


class JitterWarning(UserWarning):
    """Jitter had to be added to a matrix's diagonal before its Cholesky factorisation succeeded."""
