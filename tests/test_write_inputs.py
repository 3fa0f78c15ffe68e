"""What ``warehouse.write`` accepts: the objects researchers hold, and clear refusals.

pandas and polars are in the ``test`` extra, so these tests run; each written frame is
compared with rows written out by hand.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import warehouse
from warehouse.errors import UnsupportedData, ValidationError
from warehouse.lake import init_lake

from test_writer import T0, read_dataset

pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")

UTC = dt.timezone.utc

# Three checkpoints rows of two runs, as every form below spells them.
RUN_IDS = ["r1", "r1", "r2"]
STEPS = [1, 2, 1]
LOSSES = [0.5, 0.25, 1.5]
EXPECTED = [("r1", 1, 0.5, None), ("r1", 2, 0.25, None), ("r2", 1, 1.5, 7)]  # run, step, loss, tokens_seen


def checkpoints_rows(root: Path) -> list[tuple]:
    rows = read_dataset(root, "checkpoints").to_pylist()
    return sorted((r["run_id"], r["step"], r["train_loss"], r["tokens_seen"]) for r in rows)


FORMS = {
    "pandas": lambda: pd.DataFrame({"run_id": RUN_IDS, "step": STEPS, "train_loss": LOSSES,
                                    "tokens_seen": pd.array([None, None, 7], dtype="Int64")}),
    # A non-default index is not a column: it is left out, not refused as unknown.
    "pandas_indexed": lambda: pd.DataFrame({"run_id": RUN_IDS, "step": STEPS, "train_loss": LOSSES,
                                            "tokens_seen": [None, None, 7]}, index=[10, 20, 30]),
    "polars": lambda: pl.DataFrame({"run_id": RUN_IDS, "step": STEPS, "train_loss": LOSSES,
                                    "tokens_seen": [None, None, 7]}),
    "dict_of_lists": lambda: {"run_id": RUN_IDS, "step": STEPS, "train_loss": LOSSES, "tokens_seen": [None, None, 7]},
    "arrow_table": lambda: pa.table({"run_id": RUN_IDS, "step": STEPS, "train_loss": LOSSES,
                                     "tokens_seen": [None, None, 7]}),
    "record_batch": lambda: pa.RecordBatch.from_pydict({"run_id": RUN_IDS, "step": STEPS, "train_loss": LOSSES,
                                                        "tokens_seen": [None, None, 7]}),
    "batch_reader": lambda: pa.RecordBatchReader.from_batches(
        *(lambda t: (t.schema, t.to_batches(max_chunksize=2)))(
            pa.table({"run_id": RUN_IDS, "step": STEPS, "train_loss": LOSSES, "tokens_seen": [None, None, 7]}))),
    "list_of_dicts": lambda: [{"run_id": r, "step": s, "train_loss": x, "tokens_seen": t}
                              for r, s, x, t in zip(RUN_IDS, STEPS, LOSSES, [None, None, 7])],
}


@pytest.mark.parametrize("form", list(FORMS))
def test_write_accepts_what_researchers_hold(tmp_path: Path, form: str) -> None:
    root = init_lake(tmp_path / "lake")
    result = warehouse.write("checkpoints", FORMS[form](), lake=root, created_at=T0)
    assert (result.rows_written, result.rows_skipped) == (3, 0)
    assert checkpoints_rows(root) == EXPECTED


def test_polars_text_timestamps_and_lists_are_cast(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    frame = pl.DataFrame({
        "family_id": ["f1", "f2"], "family_version": ["1", "1"], "source": ["gen", "gen"],
        "tags": [["a", "b"], []], "created_at_utc": ["2024-05-06T07:08:09Z", "2024-05-06T09:08:09+02:00"],
    })
    warehouse.write("families", frame, lake=root)
    got = sorted(read_dataset(root, "families").to_pylist(), key=lambda r: r["family_id"])
    assert [(r["family_id"], r["tags"], r["created_at_utc"]) for r in got] == [
        ("f1", ["a", "b"], T0), ("f2", [], T0)]


def test_a_bad_value_in_a_data_frame_names_column_and_row(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    frame = pl.DataFrame({"run_id": ["r1", "r1", "r1"], "step": [1, 2, 3], "train_loss": [0.5, float("nan"), 1.0]})
    with pytest.raises(ValidationError) as info:
        warehouse.write("checkpoints", frame, lake=root)
    assert (info.value.column, info.value.row) == ("train_loss", 2)
    assert not (root / "checkpoints").exists()


@pytest.mark.parametrize("empty", [
    [], {}, pa.table({}), pd.DataFrame(), pl.DataFrame(),
    pd.DataFrame({"run_id": pd.Series([], dtype=str), "step": pd.Series([], dtype="int64")}),
], ids=["list", "dict", "arrow", "pandas", "polars", "pandas_with_columns"])
def test_an_empty_batch_says_no_rows(tmp_path: Path, empty) -> None:
    root = init_lake(tmp_path / "lake")
    with pytest.raises(ValidationError) as info:
        warehouse.write("checkpoints", empty, lake=root)
    message = str(info.value)
    assert "dataset checkpoints" in message and "holds no rows" in message
    assert "missing" not in message  # not "run_id is missing"
    assert not (root / "checkpoints").exists()


@pytest.mark.parametrize("data, shown", [
    (42, "int"), ("run_id,step\nr1,1\n", "str"), (b"bytes", "bytes"), (object(), "object"),
    (3.5, "float"), ([1, 2], None),
])
def test_an_unsupported_object_is_refused_by_type(tmp_path: Path, data, shown: str | None) -> None:
    root = init_lake(tmp_path / "lake")
    with pytest.raises((UnsupportedData, ValidationError)) as info:
        warehouse.write("checkpoints", data, lake=root)
    message = str(info.value)
    assert "checkpoints" in message
    if shown is not None:  # a type write() cannot read at all
        assert isinstance(info.value, TypeError)
        assert f"cannot write a {shown};" in message and "pandas or polars DataFrame" in message
    else:  # a list whose items are not rows
        assert "row 1" in message and "each row must be a dict" in message
    assert list(root.iterdir()) == [root / "_meta"]


def test_an_iterable_of_other_things_is_refused(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    with pytest.raises(UnsupportedData, match="must yield pyarrow Tables or RecordBatches, not dict"):
        warehouse.write("checkpoints", iter([{"run_id": "r1", "step": 1}]), lake=root)


def test_columns_of_unequal_length_are_named(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    with pytest.raises(ValidationError, match=r"columns of unequal length \(run_id: 2, step: 1"):
        warehouse.write("checkpoints", {"run_id": ["r1", "r2"], "step": [1], "train_loss": [0.5, 0.5]}, lake=root)


def test_a_value_of_another_type_in_a_dict_column_names_its_row(tmp_path: Path) -> None:
    root = init_lake(tmp_path / "lake")
    with pytest.raises(ValidationError) as info:
        warehouse.write("checkpoints", {"run_id": ["r1", "r1"], "step": [1, "two"], "train_loss": [0.5, 0.5]},
                        lake=root)
    assert (info.value.column, info.value.row, info.value.value) == ("step", 2, "two")


def test_writing_needs_neither_data_frame_library(tmp_path: Path) -> None:
    """Where pandas and polars cannot be imported, every other form is written all the same:
    the writer recognises data frames without importing their libraries."""
    root = init_lake(tmp_path / "lake")
    code = (
        "import sys\n"
        "class Block:  # import of either fails, as where neither is installed\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pandas', 'polars'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import warehouse, pyarrow as pa\n"
        f"warehouse.write('checkpoints', {{'run_id': ['r1'], 'step': [1], 'train_loss': [0.5]}}, lake={str(root)!r})\n"
        f"warehouse.write('checkpoints', [{{'run_id': 'r1', 'step': 2, 'train_loss': 0.5}}], lake={str(root)!r})\n"
        "t = pa.Table.from_pydict({'run_id': ['r1'], 'step': [3], 'train_loss': [0.5]})\n"
        f"warehouse.write('checkpoints', t, lake={str(root)!r})\n"
        f"warehouse.write('checkpoints', pa.RecordBatchReader.from_batches(t.schema, t.to_batches()), lake={str(root)!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert sorted(r[1] for r in checkpoints_rows(root)) == [1, 2, 3]
