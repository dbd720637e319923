"""Errors raised on patient data that cannot be ingested.

Every error is a ``DataError`` (itself a ``ValueError``), one subclass per kind of problem, so
that a pipeline can tell a wrong unit from a wrong file. Messages name the source row by its
position and the subject by its pseudonym; they never quote a raw identifier or a cell's text
(a name typed into a numeric column would otherwise leak into a log).
"""

from __future__ import annotations


class DataError(ValueError):
    """Patient data that vht refuses to ingest.

    ``redacted`` is the message without any text taken from the data (a unit or code that no
    vocabulary matched is described, not quoted); ingestion raises with it, so that a name
    typed into the wrong column never reaches a log.
    """

    def __init__(self, message: str, redacted: str | None = None):
        super().__init__(message)
        self.redacted = message if redacted is None else redacted


class SchemaError(DataError):
    """The file's structure: missing or duplicated columns, an empty table, a wrong resource."""


class UnitError(DataError):
    """A unit that is unknown, ambiguous, or of the wrong dimension for its variable."""


class CodeError(DataError):
    """A variable, drug or route code that the data dictionary does not declare."""


class ValueDataError(DataError):
    """A value that is not a finite number, or lies outside its variable's valid range."""


class TimeError(DataError):
    """Times that conflict: duplicates with different values, mixed clocks, missing times."""
