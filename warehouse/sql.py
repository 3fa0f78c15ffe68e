"""Quoting for SQL text the warehouse builds: every name and value goes through sqlglot."""

from __future__ import annotations

from sqlglot import exp


def quote_identifier(name: str) -> str:
    """``name`` as a quoted DuckDB identifier, whatever characters it holds."""
    return exp.to_identifier(name, quoted=True).sql(dialect="duckdb")


def quote_literal(value: str) -> str:
    """``value`` as a DuckDB string literal; quotes inside are escaped, never interpreted."""
    return exp.Literal.string(value).sql(dialect="duckdb")


def sql_literal(value: bool | int | float | str) -> str:
    """A typed value (a model parameter, a group key) as a DuckDB literal, built by sqlglot."""
    if isinstance(value, bool):
        return exp.Boolean(this=value).sql(dialect="duckdb")
    if isinstance(value, (int, float)):
        return exp.Literal.number(repr(value)).sql(dialect="duckdb")
    return exp.Literal.string(str(value)).sql(dialect="duckdb")
