"""Whether the pandas baseline gives the same numbers as the models, compared on natural keys.

- geometry_dynamics: the rows of both sides joined on the series key and step; rows on one
  side only are counted, and per value column the largest absolute and relative difference
  and the rows where exactly one side is NULL.
- events_candidates: the detected change points of each side as a set of (run_id, layer,
  metric, event_type, step); on the events both have, the same per column, and the numbers
  of the composite events' JSON objects metric by metric (a key on one side only counts as
  a NULL mismatch).

The relative difference of a and b is |a - b| / max(|a|, |b|), 0 when both are 0. Both
sides are float32 (the contract's type), so the same arithmetic differs by at most a
rounding of the last bit (about 6e-8 relative). pandas' rolling std keeps running sums, so
where the models give exactly 0 it can leave a residue far below the column's values:
a difference is within tolerance when |a - b| <= RELATIVE * max(|a|, |b|) + OF_SCALE * the
column's largest |value|. The sides agree when no row or event is on one side only, no
NULL differs and every difference is within tolerance.

    python bench/agreement.py --lake LAKE --pandas FOLDER
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from warehouse import contracts
from warehouse.duck import work_connection
from warehouse.models.state import load_analyses
from warehouse.scan import read_parquet
from warehouse.sql import quote_identifier as qi, quote_literal as ql

RELATIVE = 1e-5  # float32 rounding, with room for a different order of float64 operations
OF_SCALE = 1e-6  # of the column's largest |value|: rounding residues of running sums
DYNAMICS_KEY = ["run_id", "sample_set", "sample_id", "layer", "module", "step"]
EVENT_KEY = ["run_id", "layer", "metric", "event_type", "step"]
JSON_COLUMNS = [c.name for c in contracts.EVENTS_CANDIDATES.all_columns if c.name.endswith("_json")]


@dataclass
class ColumnDiff:
    column: str
    max_abs: float
    max_rel: float
    beyond_tolerance: int
    null_mismatches: int


@dataclass
class TableAgreement:
    table: str
    compared: int  # rows (or events) on both sides
    only_pandas: int
    only_models: int
    columns: list[ColumnDiff] = field(default_factory=list)

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.columns), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((c.max_rel for c in self.columns), default=0.0)

    @property
    def agrees(self) -> bool:
        return (not self.only_pandas and not self.only_models
                and not any(c.null_mismatches or c.beyond_tolerance for c in self.columns))

    def summary(self) -> dict:
        return asdict(self) | {"max_abs": self.max_abs, "max_rel": self.max_rel, "agrees": self.agrees}


def model_files(root: Path, model: str) -> str:
    """A glob of the files of ``model``'s most recently built analysis in the lake (the model
    and its target share their name)."""
    records = [r for r in load_analyses(root).values() if r.model == model]
    if not records:
        raise SystemExit(f"{root}: no analysis of {model} was built")
    newest = max(records, key=lambda r: r.updated_at)
    return str(root / newest.target / f"analysis_id={newest.analysis_id}" / "**" / "*.parquet")


def compare(root: Path, pandas_out: Path,
            tables: tuple[str, ...] | list[str] = ("geometry_dynamics", "events_candidates")) -> list[TableAgreement]:
    """Compare a peer's ``tables`` (both by default) in ``pandas_out`` with the models' in ``root``."""
    compare_table = {"geometry_dynamics": _dynamics, "events_candidates": _events}
    with tempfile.TemporaryDirectory() as spill:
        con = work_connection(Path(spill) / "spill")
        try:
            return [compare_table[t](con, root, pandas_out) for t in tables]
        finally:
            con.close()


def _dynamics(con, root: Path, pandas_out: Path) -> TableAgreement:
    contract = contracts.GEOMETRY_DYNAMICS
    values = [c.name for c in contract.file_columns if c.name not in DYNAMICS_KEY and c.name != "seed"
              and c.name not in ("schema_version", "created_at_utc")]
    _register(con, contract, root, pandas_out)
    return _compare_rows(con, "geometry_dynamics", DYNAMICS_KEY, values)


def _events(con, root: Path, pandas_out: Path) -> TableAgreement:
    contract = contracts.EVENTS_CANDIDATES
    skip = set(EVENT_KEY) | set(JSON_COLUMNS) | {"event_id", "schema_version", "created_at_utc"}
    values = [c.name for c in contract.file_columns if c.name not in skip]
    _register(con, contract, root, pandas_out)
    result = _compare_rows(con, "events_candidates", EVENT_KEY, values)
    result.columns += [_json_column(con, name) for name in JSON_COLUMNS]
    return result


def _register(con, contract: contracts.Dataset, root: Path, pandas_out: Path) -> None:
    """Views ``pandas_side`` and ``model_side`` of one table: the pandas file, the model's analysis."""
    pandas_file = pandas_out / f"{contract.name}.parquet"
    con.execute(f"CREATE OR REPLACE VIEW pandas_side AS SELECT * FROM read_parquet({ql(str(pandas_file))})")
    con.execute(f"CREATE OR REPLACE VIEW model_side AS SELECT * FROM {read_parquet(model_files(root, contract.name), partitions=contract.partition_by)}")


def _compare_rows(con, table: str, key: list[str], values: list[str]) -> TableAgreement:
    on = " AND ".join(f"p.{qi(k)} IS NOT DISTINCT FROM m.{qi(k)}" for k in key)
    con.execute(f"CREATE OR REPLACE TEMP TABLE joined AS SELECT {', '.join(f'p.{qi(v)} AS p_{v}, m.{qi(v)} AS m_{v}' for v in values)},"
                f" p.{qi(key[0])} IS NULL AS only_models, m.{qi(key[0])} IS NULL AS only_pandas"
                f" FROM pandas_side AS p FULL JOIN model_side AS m ON {on}")
    compared, only_pandas, only_models = con.execute(
        "SELECT count(*) FILTER (NOT only_pandas AND NOT only_models), count(*) FILTER (only_pandas),"
        " count(*) FILTER (only_models) FROM joined").fetchone()
    both = "FROM joined WHERE NOT only_pandas AND NOT only_models"
    columns = [ColumnDiff(v, *con.execute(_differences(f"p_{v}", f"m_{v}", both)).fetchone()) for v in values]
    return TableAgreement(table, compared, only_pandas, only_models, columns)


def _json_column(con, name: str) -> ColumnDiff:
    """The numbers of a JSON column of the events on both sides, matched by metric key."""
    numbers = f"""
        WITH pairs AS (
            SELECT p.{name} AS p_json, m.{name} AS m_json
            FROM pandas_side AS p
            JOIN model_side AS m ON {' AND '.join(f'p.{k} = m.{k}' for k in EVENT_KEY)}
            WHERE p.{name} IS NOT NULL OR m.{name} IS NOT NULL
        ),
        keys AS (
            SELECT p_json, m_json, unnest(list_distinct(list_concat(
                coalesce(json_keys(p_json), []), coalesce(json_keys(m_json), [])))) AS metric
            FROM pairs
        )
        SELECT (p_json ->> metric)::DOUBLE AS p_value, (m_json ->> metric)::DOUBLE AS m_value FROM keys
    """
    return ColumnDiff(name, *con.execute(_differences("p_value", "m_value", f"FROM ({numbers})")).fetchone())


def _differences(a: str, b: str, source: str) -> str:
    """max |a - b|, the largest relative difference, the count beyond tolerance, and the
    count of rows where one side alone is NULL, over ``source`` (a FROM clause)."""
    return f"""
        SELECT
            coalesce(max(diff), 0)::DOUBLE,
            coalesce(max(CASE WHEN diff = 0 THEN 0 ELSE diff / greatest(abs(a), abs(b)) END), 0)::DOUBLE,
            count(*) FILTER (diff > {RELATIVE} * greatest(abs(a), abs(b)) + {OF_SCALE} * scale),
            count(*) FILTER ((a IS NULL) <> (b IS NULL))
        FROM (
            SELECT {a} AS a, {b} AS b, abs({a} - {b}) AS diff, max(abs({b})) OVER () AS scale
            {source}
        )
    """


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True, help="a lake whose models were built")
    parser.add_argument("--pandas", type=Path, required=True, help="the folder the pandas baseline wrote")
    args = parser.parse_args()
    results = compare(args.lake.resolve(), args.pandas)
    print(json.dumps([r.summary() for r in results], indent=2))
    if not all(r.agrees for r in results):
        raise SystemExit("the pandas baseline and the models disagree")


if __name__ == "__main__":
    main()
