"""The converters' exception hierarchy: each class knows its exit code.

CLIs catch `ConverterError` once, print its one-line message and exit with `exit_code`;
anything else is a bug and keeps its traceback.
"""


class ConverterError(Exception):
    """A failure the user can act on; the message says what is wrong and what to do."""

    exit_code = 1


class UsageError(ConverterError):
    """Bad command-line input: a missing file, an invalid name, a malformed flag."""

    exit_code = 2


class ConversionError(ConverterError):
    """The source model was read but could not be turned into a SavedModel."""

    exit_code = 1


class VerificationError(ConversionError):
    """The written SavedModel does not reproduce the source model's predictions."""


class ModelsConfigError(ConverterError):
    """models.config cannot be parsed or does not satisfy the requested change."""

    exit_code = 1
