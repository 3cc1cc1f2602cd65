"""The errors a user ever sees. The CLI prints them as one line and exits with code 2.

Anything else that escapes is a bug in lmforge and keeps its traceback.
"""


class LmforgeError(Exception):
    """A problem the user can fix: the message says what, where and how."""


class ConfigError(LmforgeError):
    """A config file or override is wrong."""


class DataError(LmforgeError):
    """A data file is missing or malformed."""


class ModelError(LmforgeError):
    """A model reference cannot be resolved or loaded."""


class RunDirError(LmforgeError):
    """A run directory is missing, incomplete, or would be overwritten."""


class TrainingError(LmforgeError):
    """Training cannot go on as configured (the loss stopped being a finite number)."""
