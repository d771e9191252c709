"""Error paths of `usage-etl`: a database that cannot be reached, refuses the password or does not
exist, answers nothing, a malformed setting: one line naming host, port and database (never the
password), exit status 1, a traceback only with --debug. Bad options: a usage error, exit status 2.
Real servers and sockets throughout (a closed port, a port that accepts and never answers, a
PostgreSQL with password authentication started for this module)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings as hsettings, strategies as st

from usage_etl.cli import main
from usage_etl.db import database_url
from usage_etl.settings import ConfigError, Settings

USAGE_ETL = str(Path(sys.executable).with_name("usage-etl"))
PG_BIN = Path(sys.executable).parent.parent / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "pgserver" / "pginstall" / "bin"
REFUSED_HINT = "connection refused (is the server running and accepting TCP/IP connections?)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A fresh DAGSTER_HOME and working directory; no connection retries unless a test asks."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USAGE_ETL_CONNECT_RETRIES", "0")
    monkeypatch.setenv("USAGE_ETL_START_DATE", "2026-01-01")  # demo sets it; monkeypatch restores it
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def closed_port_url(env) -> tuple[str, int]:
    port = _free_port()  # bound, then released: nothing listens there
    env.setenv("USAGE_ETL_DATABASE_URL", f"postgresql+psycopg://alice:s3cret-pw@127.0.0.1:{port}/usage")
    return f"127.0.0.1:{port}", port


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("args", [
    ["summary"],
    ["check"],
    ["db", "upgrade"],
    ["report", "paid-vs-estimated", "--start", "2026-01-01", "--end", "2026-01-31"],
    ["demo", "--days", "2"],
    ["backfill", "--start", "2026-01-01", "--end", "2026-01-02"],
    ["generate", "--days", "1"],
    ["reprice", "--start", "2026-01-01", "--end", "2026-01-02"],
    ["source", "check"],
])
def test_connection_refused_is_one_line_naming_host_port_and_database(closed_port_url, args):
    where, _ = closed_port_url
    out = _run(*args)
    assert out.exit_code == 1, out.output
    assert out.stderr == f"Error: cannot connect to PostgreSQL at {where}, database usage: {REFUSED_HINT}\n"
    assert "s3cret" not in out.output and "Traceback" not in out.output
    assert out.stdout == ""  # nothing ran


def test_transient_errors_are_retried_with_doubling_waits_then_one_line(closed_port_url, env):
    where, _ = closed_port_url
    env.setenv("USAGE_ETL_CONNECT_RETRIES", "2")
    t0 = time.monotonic()
    out = _run("summary")
    elapsed = time.monotonic() - t0
    line = f"cannot connect to PostgreSQL at {where}, database usage: {REFUSED_HINT}"
    assert out.exit_code == 1
    assert out.stderr.splitlines() == [
        f"{line}; retrying in 1 s (attempt 2 of 3)",
        f"{line}; retrying in 2 s (attempt 3 of 3)",
        f"Error: {line}; gave up after 3 attempts",
    ]
    assert 3 <= elapsed < 10


def test_debug_shows_the_traceback(closed_port_url):
    out = _run("--debug", "summary")
    assert out.exit_code == 1
    assert out.stderr.startswith("Traceback (most recent call last):")
    assert "psycopg.OperationalError" in out.stderr
    assert out.stderr.splitlines()[-1].startswith("Error: cannot connect to PostgreSQL at 127.0.0.1:")


def test_unknown_database_is_permanent_one_line_without_retry(db_url, env):
    env.setenv("USAGE_ETL_CONNECT_RETRIES", "3")
    env.setenv("USAGE_ETL_DATABASE_URL", db_url.set(database="usage_etl_no_such_db").render_as_string(hide_password=False))
    out = _run("summary")
    assert out.exit_code == 1
    assert out.stderr == (f"Error: cannot connect to PostgreSQL at {db_url.host}:{db_url.port or 5432}, database usage_etl_no_such_db: "
                          'database "usage_etl_no_such_db" does not exist\n')


def test_a_server_that_never_answers_times_out_per_attempt(env):
    with socket.socket() as listener:  # the kernel completes the TCP handshake; nobody ever answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        env.setenv("USAGE_ETL_DATABASE_URL", f"postgresql+psycopg://alice@127.0.0.1:{port}/usage")
        env.setenv("USAGE_ETL_CONNECT_TIMEOUT_SECONDS", "1")
        t0 = time.monotonic()
        out = _run("db", "upgrade")
        elapsed = time.monotonic() - t0
    assert out.exit_code == 1
    assert out.stderr == (f"Error: cannot connect to PostgreSQL at 127.0.0.1:{port}, database usage: "
                          "no answer within 1 s (USAGE_ETL_CONNECT_TIMEOUT_SECONDS)\n")
    assert elapsed < 8


@pytest.fixture(scope="module")
def password_server():
    """A PostgreSQL of its own with scram-sha-256 authentication (password 'right')."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip("no PostgreSQL binaries from pgserver")
    root = Path(tempfile.mkdtemp(prefix="usage_etl_pw_"))
    root.chmod(0o755)
    (root / "pw").write_text("right\n")
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "nobody")
        shutil.chown(root / "pw", "nobody")
        as_user = ["su", "nobody", "-s", "/bin/sh", "-c"]

    def pg(cmd: str) -> None:
        full = [*as_user, cmd] if as_user else ["/bin/sh", "-c", cmd]
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    port = _free_port()
    pg(f"{PG_BIN}/initdb -D {root}/data -U postgres --auth=scram-sha-256 --pwfile={root}/pw -N")
    pg(f"{PG_BIN}/pg_ctl -D {root}/data -l {root}/log -w -o '-p {port} -k {root} -c listen_addresses=127.0.0.1' start")
    try:
        yield port
    finally:
        pg(f"{PG_BIN}/pg_ctl -D {root}/data -m immediate stop")
        shutil.rmtree(root, ignore_errors=True)


def test_wrong_password_is_one_line_without_the_password_and_without_retry(password_server, env):
    env.setenv("USAGE_ETL_CONNECT_RETRIES", "3")
    env.setenv("USAGE_ETL_DATABASE_URL", f"postgresql+psycopg://postgres:wrong-s3cret@127.0.0.1:{password_server}/postgres")
    for args in (["summary"], ["check"], ["db", "upgrade"]):
        out = _run(*args)
        assert out.exit_code == 1, out.output
        assert out.stderr == (f"Error: cannot connect to PostgreSQL at 127.0.0.1:{password_server}, database postgres: "
                              'password authentication failed for user "postgres"\n')
        assert "wrong-s3cret" not in out.output
    env.setenv("USAGE_ETL_DATABASE_URL", f"postgresql+psycopg://postgres:right@127.0.0.1:{password_server}/postgres")
    out = _run("db", "upgrade")  # the right password works: the line above was about the password only
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("applied ") and "right" not in out.stdout


def test_sigterm_ends_the_retry_wait_at_once(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "USAGE_ETL_CONNECT_RETRIES": "5",
           "USAGE_ETL_DATABASE_URL": f"postgresql+psycopg://alice@127.0.0.1:{_free_port()}/usage"}
    proc = subprocess.Popen([USAGE_ETL, "summary"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    assert "retrying in 1 s (attempt 2 of 6)" in first
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    rc = proc.wait(20)
    assert time.monotonic() - t0 < 5  # the waits left were 1 + 2 + 4 + 8 + 16 s
    assert rc == 1
    assert proc.stderr.read() == "\nAborted!\n"


def test_malformed_settings_are_one_line(env):
    env.setenv("USAGE_ETL_DATABASE_URL", "postgresql+psycopg://alice:s3cret@db.example:abc/usage")
    out = _run("summary")
    assert (out.exit_code, out.stderr) == (1, "Error: USAGE_ETL_DATABASE_URL: the port is not a number (postgresql+psycopg://user@host:5432/db)\n")
    env.setenv("USAGE_ETL_DATABASE_URL", "postgresql+psycopg://alice@127.0.0.1:5432/usage")
    for name, value, why in (("USAGE_ETL_CONNECT_TIMEOUT_SECONDS", "abc", "is not a whole number"),
                             ("USAGE_ETL_CONNECT_TIMEOUT_SECONDS", "0", "must be at least 1"),
                             ("USAGE_ETL_CONNECT_RETRIES", "-1", "must be at least 0")):
        env.setenv(name, value)
        out = _run("summary")
        assert (out.exit_code, out.stderr) == (1, f"Error: {name}={value!r} {why}\n")
        env.delenv(name)


@pytest.mark.parametrize(("args", "message"), [
    (["summary", "--limit", "-1"], "Invalid value for '--limit': -1 is not in the range x>=1."),
    (["generate", "--days", "0"], "Invalid value for '--days': 0 is not in the range x>=1."),
    (["generate", "--users", "0"], "Invalid value for '--users': 0 is not in the range x>=1."),
    (["generate", "--messages-per-day", "-5"], "Invalid value for '--messages-per-day': -5 is not in the range x>=1."),
    (["generate", "--bad-fraction", "2"], "Invalid value for '--bad-fraction': 2.0 is not in the range 0<=x<=1."),
    (["generate", "--unpriced-fraction", "-0.1"], "Invalid value for '--unpriced-fraction': -0.1 is not in the range 0<=x<=1."),
    (["generate", "--seed", "x"], "Invalid value for '--seed': 'x' is not a valid integer."),
    (["demo", "--days", "0"], "Invalid value for '--days': 0 is not in the range x>=1."),
    (["backfill", "--batch-size", "-1"], "Invalid value for '--batch-size': -1 is not in the range x>=0."),
    (["report", "paid-vs-estimated", "--start", "2026-02-02", "--end", "2026-02-01"], "--end 2026-02-01 is before --start 2026-02-02"),
    (["report", "paid-vs-estimated", "--start", "2026-02-01", "--end", "2026-02-03", "--limit", "0"],
     "Invalid value for '--limit': 0 is not in the range x>=1."),
    (["reprice", "--start", "2026-02-02", "--end", "2026-02-01"], "--end 2026-02-01 is before --start 2026-02-02"),
    (["check", "--start", "2026-02-02", "--end", "2026-02-01"], "--end 2026-02-01 is before --start 2026-02-02"),
    (["backfill", "--start", "2026-02-02", "--end", "2026-02-01"], "--end 2026-02-01 is before --start 2026-02-02"),
    (["check", "--start", "2026-13-01"], "Invalid value for '--start': '2026-13-01' does not match the format '%Y-%m-%d'."),
])
def test_bad_options_are_usage_errors(closed_port_url, args, message):
    out = _run(*args)  # rejected before any connection: the closed port is never tried
    assert out.exit_code == 2, out.output
    assert out.stderr.splitlines()[-1] == f"Error: {message}"
    assert "cannot connect" not in out.output


@hsettings(max_examples=60, deadline=None)
@given(password=st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=6, max_size=20),
       port=st.text(st.characters(codec="ascii", categories=["L", "P"], exclude_characters="/@?#[]:%"), min_size=1, max_size=8))
def test_a_malformed_url_never_shows_its_password(password, port):
    url = f"postgresql+psycopg://alice:{password}@db.example:{port}/usage"
    try:
        database_url(Settings(database_url=url))
    except ConfigError as exc:
        assert password not in str(exc)
    else:
        raise AssertionError(f"accepted {url}")


@hsettings(max_examples=60, deadline=None)
@given(value=st.one_of(st.integers(-10**6, 10**6).map(str), st.text(max_size=6)))
def test_connect_settings_are_whole_numbers_in_range(value):
    env = {"USAGE_ETL_CONNECT_TIMEOUT_SECONDS": value}
    try:
        n = int(value) if value.strip() else None
    except ValueError:
        n = None
    if value == "":
        assert Settings.from_env(env).connect_timeout_seconds == 10
    elif n is not None and n >= 1:
        assert Settings.from_env(env).connect_timeout_seconds == n
    else:
        with pytest.raises(ConfigError, match="USAGE_ETL_CONNECT_TIMEOUT_SECONDS"):
            Settings.from_env(env)
