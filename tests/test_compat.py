"""The catalog opened by the real clients the README names, each in a throwaway environment.

DuckDB Python 1.4, 1.5 and the project's own version, the DuckDB CLI 1.4 and 1.5 from
PyPI, and SQLAlchemy 1.4 and 2.0 through duckdb-engine (the versions the README pins),
against a catalog of the demo lake: every view and table, every SQL query of the README
(read from README.md, so the test follows it), reflection as Superset does it, and a
pooled connection across builds. The environments are cached (see :mod:`clients_env`);
each client's checks run in one subprocess that prints a JSON result.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

import clients_env
from clients_env import REPO, SCRIPTS, ClientEnv, ensure, run_client
from lake_fixtures import write_part
from model_fixtures import only_models_sql, write_runs
from warehouse import build_catalog, contracts, demo, models
from warehouse.catalog import refresh_catalog

pytestmark = pytest.mark.compat

README = REPO / "README.md"

# DuckDB Python with the CLI of the same minor version (the newest of each on PyPI), and
# pytz, which the README says a 1.4 or 1.5 environment needs.
DUCKDB = {
    "1.4": ClientEnv("duckdb-1.4", ("duckdb==1.4.5", "duckdb-cli==1.4.4.post2", "pytz")),
    "1.5": ClientEnv("duckdb-1.5", ("duckdb==1.5.6", "duckdb-cli==1.5.6", "pytz")),
    # The version the project installs, alone: DuckDB 2 needs no pytz.
    "current": ClientEnv("duckdb-current", (f"duckdb=={duckdb.__version__}",)),
}
# What a Superset of that SQLAlchemy brings besides the driver: pandas (and its numpy).
PANDAS = {"1.4": ("pandas==2.1.4", "numpy==1.26.4"), "2.0": ("pandas==2.3.3",)}


# --------------------------------------------------------------------------------------
# What the README says


def readme_blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``language``, dedented (blocks inside list items are indented)."""
    pattern = rf"^([ \t]*)```{language}[ \t]*\n(.*?)^\1```[ \t]*$"
    return [textwrap.dedent(m.group(2)) for m in re.finditer(pattern, text, re.M | re.S)]


def readme_queries(text: str) -> list[str]:
    """Every SQL query of the README: the ```sql blocks (not the model file shown as an
    example) and the literal SQL passed to ``con.sql`` / ``con.execute`` in ```python blocks."""
    queries = [b.strip() for b in readme_blocks(text, "sql") if not re.search(r"^--\s*kind:", b, re.M)]
    for block in readme_blocks(text, "python"):
        lines = block.splitlines()
        if any(line.startswith(">>>") for line in lines):  # an interactive session: keep its input
            lines = [line[4:] for line in lines if line.startswith((">>>", "..."))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            assert not re.search(r"\.(sql|execute|query)\(", block), f"README python block does not parse:\n{block}"
            continue  # an outline, not code; it runs no query
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("sql", "execute", "query") and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                queries.append(textwrap.dedent(node.args[0].value).strip())
    return queries


def readme_commands(text: str, program: str) -> list[list[str]]:
    """The command lines of ```sh blocks that run ``program``, split as a shell would."""
    return [shlex.split(line, comments=True) for block in readme_blocks(text, "sh")
            for line in block.splitlines() if line.startswith(program + " ")]


def readme_sqlalchemy_pins() -> dict[str, tuple[str, ...]]:
    """The README's `pip install` lines for SQLAlchemy clients, by SQLAlchemy minor version."""
    pins = {}
    for argv in readme_commands(README.read_text(encoding="utf-8"), "pip"):
        requirements = tuple(a for a in argv[2:] if "==" in a)
        version = dict(r.split("==") for r in requirements).get("sqlalchemy")
        if version:
            pins[".".join(version.split(".")[:2])] = requirements
    return pins


def test_the_readme_holds_the_queries_and_pins_these_tests_run() -> None:
    text = README.read_text(encoding="utf-8")
    queries = readme_queries(text)
    assert any("FROM geometry_dynamics" in q for q in queries)  # the notebook section's first query
    assert any("FROM run_overview" in q for q in queries)  # a BI view's example
    assert len(queries) >= 7
    assert [argv[:3] for argv in readme_commands(text, "duckdb")] == [["duckdb", "-readonly", "warehouse.duckdb"]] * 2
    assert set(readme_sqlalchemy_pins()) == {"1.4", "2.0"}


def test_the_project_installs_pytz_for_duckdb_1_4_and_1_5() -> None:
    # It allows duckdb>=1.4, whose Python API needs pytz for TIMESTAMPTZ (see below).
    assert any(re.match(r"pytz\b", r) for r in importlib.metadata.requires("squiggle-warehouse") or [])


def test_an_unreachable_package_index_fails_the_tests_with_a_clear_message(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(clients_env, "CACHE", tmp_path)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no configured index or local wheels
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "no-index").as_uri())
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    env = ClientEnv("unreachable", ("duckdb==1.4.5",))
    message = r"could not install the unreachable client environment \(duckdb==1\.4\.5\) from the package index: is PyPI reachable\?"
    with pytest.raises(pytest.fail.Exception, match=message):
        clients_env.ensure(env)
    assert list(tmp_path.glob("unreachable-*")) == []  # nothing half made is left to reuse
    with pytest.raises(pytest.fail.Exception, match=message):
        clients_env.ensure(env)  # the session's other tests fail at once, without retrying


# --------------------------------------------------------------------------------------
# The demo catalog, and what the project's own DuckDB reads from it


@pytest.fixture(scope="module")
def demo_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<folder>/warehouse.duckdb`` of the demo lake with every model built."""
    folder = tmp_path_factory.mktemp("demo-project")
    demo.write_demo(lake=folder / "lake", seed=0)
    models.run(lake=folder / "lake", report=lambda _: None)
    return build_catalog(folder / "lake", folder / "warehouse.duckdb")


@pytest.fixture(scope="module")
def reference(demo_catalog: Path) -> dict:
    """Objects, row counts, comments and README query row counts, read in this process."""
    con = duckdb.connect(str(demo_catalog), read_only=True)
    try:
        kinds = dict(con.execute(
            "SELECT view_name, 'view' FROM duckdb_views() WHERE NOT internal AND database_name = current_database() "
            "UNION ALL SELECT table_name, 'table' FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall())
        counts = {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in kinds}
        columns: dict[str, list[list[str]]] = {n: [] for n in kinds}
        timestamptz = set()
        for table, column, comment, type_ in con.execute(
            "SELECT table_name, column_name, comment, data_type FROM duckdb_columns() "
            "WHERE database_name = current_database() ORDER BY table_name, column_index"
        ).fetchall():
            columns[table].append([column, comment])
            if type_ == "TIMESTAMP WITH TIME ZONE":
                timestamptz.add(table)
        queries = [len(con.execute(q).fetchall()) for q in readme_queries(README.read_text(encoding="utf-8"))]
    finally:
        con.close()
    return {"kinds": kinds, "counts": counts, "columns": columns, "timestamptz": timestamptz, "queries": queries}


def test_the_demo_catalog_has_rows_to_read(reference: dict) -> None:
    # Otherwise the clients' checks below would pass on empty views.
    assert {"runs", "geometry_state", "geometry_dynamics", "events", "matches", "run_overview"} <= set(reference["kinds"])
    assert all(reference["counts"][n] > 0 for n in ("runs", "geometry_state", "geometry_dynamics", "signatures"))
    assert {"runs", "geometry_state", "warehouse_analyses"} <= reference["timestamptz"]


# --------------------------------------------------------------------------------------
# DuckDB Python and CLI


@pytest.mark.parametrize("version", list(DUCKDB))
def test_duckdb_python_reads_every_object_and_readme_query(version: str, demo_catalog: Path, reference: dict) -> None:
    env = ensure(DUCKDB[version])
    queries = readme_queries(README.read_text(encoding="utf-8"))
    seen = run_client(env, "duckdb_client.py", {"catalog": str(demo_catalog), "queries": queries})
    expected_version = duckdb.__version__ if version == "current" else version + "."
    assert seen["version"].startswith(expected_version)
    assert seen["pytz"] == (version != "current")
    assert {n: o["kind"] for n, o in seen["objects"].items()} == reference["kinds"]
    assert {n: o.get("rows", o.get("error")) for n, o in seen["objects"].items()} == {
        n: min(5, c) for n, c in reference["counts"].items()
    }
    assert [q.get("rows", q.get("error")) for q in seen["queries"]] == reference["queries"]


@pytest.mark.parametrize("version", ["1.4", "1.5"])
def test_older_duckdb_python_without_pytz_fails_on_timestamptz(version: str, demo_catalog: Path, reference: dict) -> None:
    # Why the project requires pytz, and the README tells other environments to install it.
    seen = run_client(ensure(DUCKDB[version]), "duckdb_client.py", {"catalog": str(demo_catalog), "block_pytz": True})
    failed = {n for n, o in seen["objects"].items() if "error" in o}
    assert failed == {n for n in reference["timestamptz"] if reference["counts"][n] > 0}
    assert all("pytz" in seen["objects"][n]["error"] for n in failed)


@pytest.mark.parametrize("version", ["1.4", "1.5"])
def test_duckdb_cli_lists_the_catalog_and_runs_the_readme_lines(version: str, demo_catalog: Path, reference: dict) -> None:
    cli = ensure(DUCKDB[version]).bin("duckdb")
    folder = demo_catalog.parent  # the README's lines run in the catalog's folder

    def run(*args: str) -> str:
        done = subprocess.run([str(cli), *args], capture_output=True, text=True, cwd=folder, timeout=120)
        assert done.returncode == 0 and not done.stderr, f"duckdb {' '.join(args)}: {done.stderr}"
        return done.stdout

    assert run("--version").startswith(f"v{version}.")
    # 1.4 lists the names; 1.5 draws a box per table, with its columns, in colour.
    tables = re.sub(r"\x1b\[[0-9;]*m", "", run("-readonly", "warehouse.duckdb", "-c", ".tables"))
    assert [n for n in reference["kinds"] if not re.search(rf"(?<!\w){n}(?!\w)", tables)] == []
    lines = readme_commands(README.read_text(encoding="utf-8"), "duckdb")
    outputs = [run(*argv[1:]) for argv in lines]
    assert "eff_rank" in outputs[1] and "Transformer layer index." in outputs[1]  # geometry_state's columns


# --------------------------------------------------------------------------------------
# SQLAlchemy through duckdb-engine


def sqlalchemy_env(version: str) -> ClientEnv:
    return ensure(ClientEnv(f"sqlalchemy-{version}", readme_sqlalchemy_pins()[version] + PANDAS[version]))


@pytest.mark.parametrize("version", ["1.4", "2.0"])
def test_sqlalchemy_reflects_and_reads_every_object(version: str, demo_catalog: Path, reference: dict) -> None:
    env = sqlalchemy_env(version)
    url = f"duckdb:///{demo_catalog}?access_mode=read_only"  # duckdb:////abs/path: the README's form
    seen = run_client(env, "sqlalchemy_client.py", {"mode": "reflect", "url": url})
    assert seen["sqlalchemy"].startswith(version + ".")
    assert seen["errors"] == {}
    kinds = reference["kinds"]
    assert seen["views"] == sorted(n for n, k in kinds.items() if k == "view")
    assert seen["tables"] == sorted(n for n, k in kinds.items() if k == "table")
    assert seen["columns"] == reference["columns"]  # every column, with its comment
    assert all(comment for cols in seen["columns"].values() for _, comment in cols)
    assert seen["autoload"] == {n: [c for c, _ in cols] for n, cols in reference["columns"].items()}
    assert seen["read_sql_table"] == reference["counts"]


class PooledClient:
    """A SQLAlchemy engine in a client process of its own (DuckDB shares one open database
    per path between the connections of a process, so engines in one process would meet)."""

    def __init__(self, env: ClientEnv, config: dict) -> None:
        self.process = subprocess.Popen(
            [str(env.python), str(SCRIPTS / "sqlalchemy_client.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.process.stdin.write(json.dumps({"mode": "pool", **config}) + "\n")
        self.process.stdin.flush()
        self._answer()  # the versions: the engine is ready

    def count(self) -> list:
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=60)
            pytest.fail(f"the pooled client exited {self.process.returncode}: {self.process.stderr.read()[-3000:]}")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(timeout=60) == 0, self.process.stderr.read()


RECYCLE = 1.0  # seconds a pooled connection lives, then reopened at its next checkout
RETENTION = 3.0  # seconds a superseded snapshot is kept (SQUIGGLE_SNAPSHOT_HOURS)
ENGINES = {  # name: the engine's settings and how many connections it holds at once
    "pool of one, recycled": {"kwargs": {"pool_size": 1, "max_overflow": 0, "pool_recycle": RECYCLE}},
    "NullPool": {"kwargs": {"poolclass": "NullPool"}},
    "attached, pool of 3, recycled": {"kwargs": {"pool_size": 3, "pool_recycle": RECYCLE}, "attach": True, "connections": 3},
    "default pool": {"kwargs": {}},
    "pool of 3, recycled": {"kwargs": {"pool_size": 3, "pool_recycle": RECYCLE}, "connections": 3},
}


def test_a_pool_sees_new_builds_and_never_fails_with_the_readme_settings(tmp_path: Path, monkeypatch) -> None:
    """Superset's SQLAlchemy 1.4 holding pooled connections across real builds, the last of
    which removes the first build's snapshot."""
    sql = only_models_sql(tmp_path / "sql", "geometry_dynamics")
    lake, db = tmp_path / "lake", tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("SQUIGGLE_SNAPSHOT_HOURS", str(RETENTION / 3600))
    per_run = 10 * 2 * 2  # write_runs: 10 steps x 2 layers x (pooled, one sample), one dynamics row each

    def build(*runs: str) -> None:
        write_runs(lake, {run: range(0, 100, 10) for run in runs})
        models.run(lake=lake, sql_dir=sql, report=lambda _: None)
        assert refresh_catalog(lake, db, sql_dir=sql)

    build("r1", "r2", "r3")
    env = sqlalchemy_env("1.4")
    config = {"url": f"duckdb:///{db}?access_mode=read_only", "catalog": str(db)}
    clients = {name: PooledClient(env, {**config, "engine": spec}) for name, spec in ENGINES.items()}
    try:
        seen = {name: [c.count()] for name, c in clients.items()}
        build("r4")
        time.sleep(RECYCLE + 0.5)
        for name, c in clients.items():
            seen[name].append(c.count())
        time.sleep(RETENTION + 0.5)
        build("r5")  # removes the first build's snapshot, superseded for longer than the retention
        for name, c in clients.items():
            seen[name].append(c.count())
    finally:
        for c in clients.values():
            c.close()
    for name in ("pool of one, recycled", "NullPool", "attached, pool of 3, recycled"):
        n = ENGINES[name].get("connections", 1)
        assert seen[name] == [[3 * per_run] * n, [4 * per_run] * n, [5 * per_run] * n], name
    # Without recycling, or with pooled connections that share DuckDB's database of the
    # path, the pool keeps showing the first build, and fails once its snapshot is gone.
    for name in ("default pool", "pool of 3, recycled"):
        n = ENGINES[name].get("connections", 1)
        assert seen[name][:2] == [[3 * per_run] * n] * 2, name
        assert all("No files found that match the pattern" in c for c in seen[name][2]), seen[name]


# --------------------------------------------------------------------------------------
# The oldest DuckDB's view of a catalog: types and comments


def test_catalog_types_and_comments_in_duckdb_1_4(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    expected = {name: 0 for name in contracts.DATASETS}
    for dataset, partition, n in [
        ("runs", {"run_id": "0007"}, 2),
        ("families", {}, 3),
        ("geometry_state", {"analysis_id": "a", "run_id": "0007"}, 4),
        ("probe_summaries", {"analysis_id": "a", "run_id": "0007"}, 1),
        ("signatures", {"analysis_id": "a", "run_id": "0007"}, 5),
    ]:
        write_part(lake, dataset, partition, n)
        expected[dataset] = n
    for name, dataset in contracts.DATASETS.items():
        if "analysis_id" in dataset.partition_by:  # <name>_all: every analysis
            expected[f"{name}_all"] = expected[name]
            if name != "geometry_state":  # a model's target shows its current analysis: not "a"
                expected[name] = 0
    views = tmp_path / "views"
    views.mkdir()
    (views / "run_seeds.sql").write_text(
        "-- description: Seeds of the runs.\n-- column run_id: The run.\n-- column seed: The seed.\nCREATE VIEW run_seeds AS SELECT run_id, seed FROM runs\n"
    )
    expected["run_seeds"] = 2
    db = build_catalog(lake, tmp_path / "warehouse.duckdb", views_dir=views)

    seen = run_client(ensure(DUCKDB["1.4"]), "duckdb_client.py", {"catalog": str(db), "describe": True})
    assert seen["version"].startswith("1.4.")
    for name, n in expected.items():
        assert seen["counts"][name] == n, name
    for name in contracts.DATASETS:
        assert seen["types"][name] == [[c.name, contracts.duckdb_type(c.type)] for c in contracts.get(name).all_columns]
    assert seen["uncommented"] == 0
