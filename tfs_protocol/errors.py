"""The one exception the protocol package raises."""

from __future__ import annotations


class CodecError(ValueError):
    """A body or tensor does not fit TF Serving's JSON rules; `code` is the canonical code."""

    def __init__(self, message: str, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.code = code
