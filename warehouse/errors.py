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
        self.reason = message
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


class InvalidInput(ValidationError):
    """Every problem found in one or more inputs, reported at once; nothing was written.

    ``problems`` lists them all (one per column and rule, at its first row); the message
    shows the first :data:`MAX_PROBLEMS` and says how many more there are. The attributes
    ``dataset``, ``source``, ``column``, ``row`` and ``value`` are those of the first problem.
    """

    def __init__(self, problems: list[ValidationError]) -> None:
        if not problems:
            raise ValueError("InvalidInput needs at least one problem")
        first = problems[0]
        super().__init__(first.reason, dataset=first.dataset, source=first.source,
                         column=first.column, row=first.row, value=first.value)
        self.problems = list(problems)
        if len(problems) > 1:
            shown = [f"  {p}" for p in problems[:MAX_PROBLEMS]]
            if len(problems) > MAX_PROBLEMS:
                shown.append(f"  and {len(problems) - MAX_PROBLEMS} more")
            self.args = (f"{len(problems)} problems found; nothing was written:\n" + "\n".join(shown),)


MAX_PROBLEMS = 20  # problems listed in one message
MAX_SHOWN = 200  # characters of a value quoted in a message


def shown_value(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long the value is when cut."""
    if isinstance(value, str) and len(value) > limit:  # cut before repr: the value may be 100 MB
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters as text)"


class ModelError(WarehouseError):
    """A model that cannot be planned or run; the message names the model and its file."""


class LockBusy(WarehouseError):
    """Another build holds the lake's lock."""


class CaptureError(WarehouseError, ValueError):
    """Activations or a capture session call the capture library cannot turn into rows."""


class UnknownDataset(WarehouseError, KeyError):
    """A dataset name no contract has (a KeyError too, as a failed lookup)."""

    def __str__(self) -> str:  # KeyError would quote the message as a key
        return str(self.args[0]) if self.args else ""


class LakeNotFound(WarehouseError):
    """The lake root does not exist (or is not a folder), and nothing said to create it."""


class UnsupportedData(WarehouseError, TypeError):
    """An object :func:`warehouse.write` cannot read rows from."""


class LakeNotWritable(WarehouseError):
    """This process may not write the lake (a read-only mount, or no permission)."""
