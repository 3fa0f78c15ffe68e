"""Quoting for SQL text the warehouse builds: every name and value goes through sqlglot."""

from __future__ import annotations

from sqlglot import exp


def quote_identifier(name: str) -> str:
    """``name`` as a quoted DuckDB identifier, whatever characters it holds."""
    return exp.to_identifier(name, quoted=True).sql(dialect="duckdb")


def quote_literal(value: str) -> str:
    """``value`` as a DuckDB string literal; quotes inside are escaped, never interpreted."""
    return exp.Literal.string(value).sql(dialect="duckdb")
