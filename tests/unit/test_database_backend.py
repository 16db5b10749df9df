"""The PostgreSQL backend's own additions that need no server: psycopg keeps the conversion of the statement
that places an order, which has more parameters than psycopg's own bound for keeping one."""

from __future__ import annotations

from psycopg import _queries
from psycopg.adapt import Transformer

import config.kernel.postgresql.base as backend


def test_psycopg_converts_a_statement_of_many_parameters_once_and_keeps_it():
    # A psycopg that no longer has the bound under this name would convert the order's statement at each POST.
    assert _queries.MAX_CACHED_STATEMENT_PARAMS >= backend.MAX_CACHED_STATEMENT_PARAMS
    statement = ("INSERT INTO t (a, b) VALUES " + ", ".join(["(%s, %s)"] * 40)).encode()
    values = list(range(80))

    before = _queries._query2pg.cache_info()
    for _ in range(2):
        query = _queries.PostgresQuery(Transformer())
        query.convert(statement, values)
        assert query.query.startswith(b"INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)")
    after = _queries._query2pg.cache_info()

    assert after.hits >= before.hits + 1
