"""Test database: USAGE_ETL_TEST_DATABASE_URL if set, else the server at 127.0.0.1:5432 if it
answers, else an embedded PostgreSQL (docs/architecture.md, "Runtime"). Each test gets its own database, cloned from
a template that has the migrations applied."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg

# Before any usage_etl import: settings come from the test environment only, never from a .env
# left by `make demo` in the working directory.
os.environ["USAGE_ETL_DOTENV"] = "0"
for _name in [n for n in os.environ if n.startswith("USAGE_ETL_") and n not in ("USAGE_ETL_DOTENV", "USAGE_ETL_TEST_DATABASE_URL")]:
    del os.environ[_name]
import pytest
import sqlalchemy as sa

from usage_etl import migrations
from usage_etl.settings import Settings
from usage_etl.db import embedded_url


def _server_url() -> sa.URL:
    explicit = os.environ.get("USAGE_ETL_TEST_DATABASE_URL")
    if explicit:
        return sa.make_url(explicit).set(drivername="postgresql+psycopg")
    local = sa.make_url("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=2).close()
        return local
    except psycopg.OperationalError:
        return sa.make_url(embedded_url(".usage_etl/test"))


def _admin(url: sa.URL, sql: str) -> None:
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True) as c:
        c.execute(sql)


@pytest.fixture(scope="session")
def server_url() -> Iterator[sa.URL]:
    url = _server_url()
    template = f"usage_etl_tpl_{uuid.uuid4().hex[:10]}"
    _admin(url, f'CREATE DATABASE "{template}"')
    engine = sa.create_engine(url.set(database=template), poolclass=sa.NullPool)
    migrations.upgrade(engine, "public")
    engine.dispose()
    yield url.set(database=template)
    _admin(url, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


@pytest.fixture
def db_url(server_url: sa.URL, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.URL]:
    """A fresh migrated database for this test; USAGE_ETL_DATABASE_URL points at it."""
    name = f"usage_etl_t_{uuid.uuid4().hex[:12]}"
    _admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{server_url.database}"')
    url = server_url.set(database=name)
    monkeypatch.setenv("USAGE_ETL_DATABASE_URL", url.render_as_string(hide_password=False))
    yield url
    sa.create_engine(url).dispose()
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(db_url: sa.URL) -> Iterator[sa.Engine]:
    eng = sa.create_engine(db_url, poolclass=sa.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(db_url: sa.URL) -> Settings:
    return Settings(database_url=db_url.render_as_string(hide_password=False))
