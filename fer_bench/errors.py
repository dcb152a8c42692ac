"""The project's exception types: one clear error that names the file, row, option or model."""


class FerBenchError(Exception):
    """Base class of every error fer_bench raises on purpose."""


class DataError(FerBenchError, ValueError):
    """Bad input data. The message names the file and the row or image."""


class ConfigError(FerBenchError, ValueError):
    """A bad option or axis value (unknown loss, split, init ...). The message names the
    option, the value and what is allowed (with close-name suggestions)."""


class ModelError(FerBenchError):
    """A model could not be found, built, or run. The message names the model."""


class AlignError(FerBenchError):
    """Face alignment cannot run: dlib is missing, or a model file is missing or corrupt.
    The message says how to install the ``align`` extra or names the bad file."""


class CellFailed(FerBenchError):
    """One grid cell failed (NaN loss, out of memory, bad model output); others go on."""


class CellSkipped(FerBenchError):
    """A cell that cannot run as asked (e.g. ImageNet init for a model without weights);
    the message gives the reason. The plugin turns it into a pytest skip."""
