"""Typed errors raised by the engine. Every message names the file and a human reason."""

from __future__ import annotations

from pathlib import Path


class CopyLensError(Exception):
    """Base class of every error the engine raises on purpose."""


class ImageLoadError(CopyLensError):
    """An image could not be decoded: missing, empty, truncated, not an image, too large, ...

    ``path`` is the file (or a label such as ``"<clipboard>"``), ``reason`` a short human sentence.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class IndexFormatError(CopyLensError):
    """An index directory is missing, incomplete, of another format version or built with other settings."""


class UnknownBackendError(CopyLensError, KeyError):
    """A backend name is not in its registry; the message lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class Cancelled(CopyLensError):
    """A job was cancelled between two progress reports."""
