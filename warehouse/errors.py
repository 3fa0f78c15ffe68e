"""The errors the warehouse raises: each names what is wrong and where."""

from __future__ import annotations

from typing import Any


class WarehouseError(Exception):
    """Base class of every error the warehouse raises on purpose."""


class UnsafeIdentifier(WarehouseError, ValueError):
    """An identifier that would become an unsafe path segment."""


class ValidationError(WarehouseError, ValueError):
    """A batch refused against its dataset contract; nothing was written.

    Carries the dataset, the input (file name or ``<batch>``), the column, the row (counted
    from 1, the first data row) and the offending value, so that callers and tests can
    inspect them.
    """

    def __init__(
        self,
        message: str,
        *,
        dataset: str,
        source: str = "<batch>",
        column: str | None = None,
        row: int | None = None,
        value: Any = None,
    ) -> None:
        self.dataset = dataset
        self.source = source
        self.column = column
        self.row = row
        self.value = value
        where = [f"dataset {dataset}", f"input {source}"]
        if column is not None:
            where.append(f"column {column}")
        if row is not None:
            where.append(f"row {row}")
        if value is not None:
            where.append(f"value {shown_value(value)}")
        super().__init__(f"{', '.join(where)}: {message}")


MAX_SHOWN = 200  # characters of a value quoted in a message


def shown_value(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long the value is when cut."""
    if isinstance(value, str) and len(value) > limit:  # cut before repr: the value may be 100 MB
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters as text)"


class LockBusy(WarehouseError):
    """Another build holds the lake's lock."""


class CaptureError(WarehouseError, ValueError):
    """Activations or a capture session call the capture library cannot turn into rows."""


class LakeNotWritable(WarehouseError):
    """This process may not write the lake (a read-only mount, or no permission)."""
