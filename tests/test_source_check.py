"""Mapping errors fail fast with one message naming table, column and expected type, before any
partition is written; per-row problems are left to quarantine."""

from __future__ import annotations

import re
import tomllib

import pytest
import sqlalchemy as sa
from usage_helpers import EXAMPLES, SEED_SQL, materialize, run_sql_file, settings_for

from usage_etl.source_config import parse_source_config
from usage_etl.sources.mapping_check import MappingError, check_source

U1 = "aaaaaaaa-0000-4000-8000-000000000001"


def variant(name: str, **changes: object):
    """An example configuration with `section__key=value` changes (value None removes the key)."""
    data = tomllib.loads((EXAMPLES / name).read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if value is None:
            data[section].pop(key)
        else:
            data.setdefault(section, {})[key] = value
    return parse_source_config(data)


@pytest.fixture
def ai_usage_log(engine):
    run_sql_file(engine, SEED_SQL / "002_ai_usage_log.sql")
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT log_ai_usage(CAST(:u AS uuid), p_customer_name => 'Acme', p_input_tokens => 10, p_output_tokens => 5)"), {"u": U1})
        conn.execute(sa.text("UPDATE ai_usage_log SET created_at = '2026-03-30T10:00Z'"))


@pytest.fixture
def usage_logs(engine):
    run_sql_file(engine, SEED_SQL / "001_usage_logs.sql")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO usage_logs (user_id, action, metadata, created_at) VALUES "
                             "(:u, 'image_generation', '{\"model_used\": \"sdxl\", \"api_provider\": \"replicate\"}', '2026-03-30T10:00Z')"), {"u": U1})


def check(engine, db_url, source) -> str:
    with pytest.raises(MappingError) as exc:
        check_source(engine, settings_for(db_url, source))
    return str(exc.value)


def test_examples_fit_their_tables(engine, db_url, ai_usage_log, usage_logs) -> None:
    check_source(engine, settings_for(db_url, variant("002_ai_usage_log.toml")))
    check_source(engine, settings_for(db_url, variant("001_usage_logs.toml")))


def test_missing_column_fails_the_run_before_any_partition_is_written(engine, db_url, ai_usage_log) -> None:
    settings = settings_for(db_url, variant("002_ai_usage_log.toml", tokens__input_tokens="input_tokenz"))
    result = materialize(settings, "daily_user_usage", "2026-03-29", "2026-03-31")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause else failure.step_failure_data.error.message
    assert "public.ai_usage_log.input_tokenz (tokens.input_tokens): column does not exist; expected an integer" in message
    with engine.connect() as conn:
        written = conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM user_token_usage) + (SELECT count(*) FROM user_conversation_day_usage)"
            " + (SELECT count(*) FROM user_token_usage_by_dimension) + (SELECT count(*) FROM usage_quarantine)")).scalar_one()
    assert written == 0


def test_type_that_cannot_be_cast(engine, db_url, ai_usage_log) -> None:
    msg = check(engine, db_url, variant("002_ai_usage_log.toml", tokens__output_tokens="created_at", columns__time="user_email"))
    assert msg.startswith("source mapping does not fit public.ai_usage_log (2 problems):")
    assert "public.ai_usage_log.user_email (columns.time): has type text, which cannot be read as timestamp with time zone" in msg
    assert "public.ai_usage_log.created_at (tokens.output_tokens): has type timestamp with time zone, which cannot be read as an integer" in msg


def test_text_column_whose_values_are_not_numbers(engine, db_url, ai_usage_log) -> None:
    msg = check(engine, db_url, variant("002_ai_usage_log.toml", tokens__input_tokens="customer_name"))
    assert "public.ai_usage_log.customer_name (tokens.input_tokens): none of the 1 sampled values is an integer" in msg
    assert "(e.g. 'Acme')" in msg


def test_json_path_that_never_matches(engine, db_url, usage_logs) -> None:
    msg = check(engine, db_url, variant("001_usage_logs.toml", columns__model={"column": "metadata", "path": "model"}))
    assert "public.usage_logs.metadata->>'model' (columns.model): the key path matches none of the latest 1 rows; expected a scalar read as text" in msg


def test_path_into_a_column_that_is_not_json(engine, db_url, usage_logs) -> None:
    msg = check(engine, db_url, variant("001_usage_logs.toml", breakdowns__format={"column": "format", "path": "kind"}))
    assert "public.usage_logs.format (breakdowns.format): has type text, but path kind needs json or jsonb" in msg


def test_usage_object_without_the_semantics_fields(engine, db_url, usage_logs) -> None:
    source = variant("001_usage_logs.toml", tokens__semantics="anthropic", tokens__usage={"column": "metadata"})
    msg = check(engine, db_url, source)
    assert "public.usage_logs.metadata (tokens.usage): no input_tokens or output_tokens in the latest 1 rows; expected anthropic usage objects" in msg


def test_missing_table(engine, db_url) -> None:
    msg = check(engine, db_url, variant("000_x402_prompt_template_usage_logs.toml"))
    assert msg == "source table public.x402_prompt_template_usage_logs does not exist (or this database user cannot see it)"


def test_empty_table_checks_the_catalog_only(engine, db_url) -> None:
    run_sql_file(engine, SEED_SQL / "001_usage_logs.sql")
    check_source(engine, settings_for(db_url, variant("001_usage_logs.toml", columns__model={"column": "metadata", "path": "nothing"})))
    with pytest.raises(MappingError, match=re.escape("usage_logs.credits (columns.paid_amount): column does not exist")):
        check_source(engine, settings_for(db_url, variant("001_usage_logs.toml", columns__paid_amount="credits")))


def test_cli_source_check(engine, db_url, ai_usage_log, monkeypatch) -> None:
    from click.testing import CliRunner

    from usage_etl.cli import main

    monkeypatch.setenv("USAGE_ETL_SOURCE_CONFIG", str(EXAMPLES / "002_ai_usage_log.toml"))
    ok = CliRunner().invoke(main, ["source", "check"])
    assert (ok.exit_code, ok.output) == (0, "mapping fits public.ai_usage_log\n")
    monkeypatch.setenv("USAGE_ETL_SOURCE_CONFIG", str(EXAMPLES / "001_usage_logs.toml"))
    bad = CliRunner().invoke(main, ["source", "check"])
    assert bad.exit_code == 1
    assert "source table public.usage_logs does not exist" in bad.output


def test_a_view_is_refused_naming_what_to_read_instead(engine, db_url, ai_usage_log) -> None:
    """A daily run reads each row's version (xmin): a view has none, so it fails the check (before,
    its read failed with "column xmin does not exist")."""
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE VIEW ai_usage_view AS SELECT * FROM ai_usage_log"))
    view = variant("002_ai_usage_log.toml", source__table="ai_usage_view")
    assert check(engine, db_url, view) == (
        "source mapping does not fit public.ai_usage_view (1 problem):\n  - public.ai_usage_view is a view: a daily run reads each "
        "row's version (xmin) for the late-data fingerprint, which only a table has; read the table itself"
    )
