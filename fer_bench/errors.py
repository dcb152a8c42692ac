"""The project's exception types: one clear error that names the file, row, option or model.

Each type carries the exit status ``fer-bench`` ends with when it stops a command
(``exit_code``): **2** when the command line asks for something that cannot be done as
given (a bad option value, an unknown name, a data path that is not a data source, a
split the data cannot provide), **1** when the command ran and something failed at run
time (bad contents of a data file, a model that cannot be built, an I/O error).
"""


class FerBenchError(Exception):
    """Base class of every error fer_bench raises on purpose."""

    #: ``fer-bench``'s exit status when this error ends a command (1: runtime failure).
    exit_code = 1


class DataError(FerBenchError, ValueError):
    """Bad input data. The message names the file and the row or image."""


class DataPathError(DataError):
    """The data path given is no data source: it does not exist, is empty, or lacks a file
    the format needs. A usage error (exit 2): the user named the wrong path."""

    exit_code = 2


class SplitUnavailable(DataError):
    """The data cannot provide the split asked for (e.g. ``official`` on a source that holds
    only Training rows). The message names the split, the missing usage and what to use
    instead. A usage error (exit 2)."""

    exit_code = 2


class ConfigError(FerBenchError, ValueError):
    """A bad option or axis value (unknown loss, split, init ...). The message names the
    option, the value and what is allowed (with close-name suggestions)."""

    exit_code = 2


class ModelError(FerBenchError):
    """A model could not be found, built, or run. The message names the model."""


class AlignError(FerBenchError):
    """Face alignment cannot run: dlib is missing, or a model file is missing or corrupt.
    The message names what is missing and how to install it, or the bad file."""


class CellFailed(FerBenchError):
    """One grid cell failed (NaN loss, out of memory, bad model output); others go on."""


class CellSkipped(FerBenchError):
    """A cell that cannot run as asked (e.g. ImageNet init for a model without weights);
    the message gives the reason. The plugin turns it into a pytest skip."""
