"""The project's exception types: one clear error that names the file, row or model."""


class FerBenchError(Exception):
    """Base class of every error fer_bench raises on purpose."""


class DataError(FerBenchError, ValueError):
    """Bad input data. The message names the file and the row or image."""


class ModelError(FerBenchError):
    """A model could not be found, built, or run. The message names the model."""


class CellFailed(FerBenchError):
    """One grid cell failed (NaN loss, out of memory, bad model output); others go on."""
