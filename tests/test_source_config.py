"""The source configuration file: examples, defaults, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
from usage_helpers import EXAMPLES, example

from usage_etl.settings import ConfigError, Settings, SourceColumns
from usage_etl.source_config import FieldRef, SourceConfig, SourceConfigError, load_source_config, parse_source_config

MINIMAL = {"columns": {"id": "id", "time": "t", "user": "u"}, "tokens": {"semantics": "flat"}}


def errors_of(data: dict) -> str:
    with pytest.raises(SourceConfigError) as exc:
        parse_source_config(data, "cfg.toml")
    return str(exc.value)


def test_every_example_loads() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.toml"))
    assert names == ["000_x402_prompt_template_usage_logs.toml", "001_usage_logs.toml", "002_ai_usage_log.toml",
                     "003_chat_messages.toml", "004_claude_code_jsonl.toml"]
    tables = [load_source_config(EXAMPLES / n).table for n in names]
    assert tables == ["x402_prompt_template_usage_logs", "usage_logs", "ai_usage_log", "chat_messages", "claude_code_messages"]


def test_default_is_the_chat_messages_example() -> None:
    assert Settings().source_config == SourceConfig.default() == example("003_chat_messages.toml")
    # The legacy environment variables still choose table and schema of the default mapping.
    s = Settings(source_schema="raw", source_table="msgs")
    assert (s.source_config.schema_name, s.source_config.table) == ("raw", "msgs")


def test_configured_source_is_mirrored_in_legacy_fields() -> None:
    s = Settings(source=example("001_usage_logs.toml"))
    assert (s.source_schema, s.source_table) == ("public", "usage_logs")
    # model is read from a JSON path and there is no conversation or usage column.
    assert s.source_columns == SourceColumns(id="id", user_id="user_id", conversation_id=None, agent_id=None, model=None,
                                             created_at="created_at", metadata=None)


def test_from_env(tmp_path: Path) -> None:
    s = Settings.from_env({"USAGE_ETL_SOURCE_CONFIG": str(EXAMPLES / "002_ai_usage_log.toml")})
    assert s.source_config.dimensions == ["request_type", "customer_id"]
    assert Settings.from_env({}).source is None
    bad = tmp_path / "bad.toml"
    bad.write_text('[columns]\nid = "id"\ntime = "t"\nuser = "u"\n[tokens]\nsemantics = "flat"\nimput_tokens = "x"\n')
    with pytest.raises(ConfigError, match=r"USAGE_ETL_SOURCE_CONFIG: source config .*bad.toml: tokens.imput_tokens: unknown key"):
        Settings.from_env({"USAGE_ETL_SOURCE_CONFIG": str(bad)})
    with pytest.raises(ConfigError, match="missing.toml: cannot read"):
        Settings.from_env({"USAGE_ETL_SOURCE_CONFIG": str(tmp_path / "missing.toml")})


def test_yaml_equals_toml(tmp_path: Path) -> None:
    y = tmp_path / "s.yaml"
    y.write_text(
        "source: {schema: public, table: ai_usage_log}\n"
        "columns: {id: id, time: created_at, user: user_id, conversation: session_id, model: model_used, status: status}\n"
        "tokens: {semantics: flat, input_tokens: input_tokens, output_tokens: output_tokens}\n"
        "status: {error_values: [error]}\n"
        "breakdowns: {request_type: request_type, customer_id: customer_id}\n"
    )
    assert load_source_config(y) == example("002_ai_usage_log.toml")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.toml"
    p.write_text("[columns\n")
    with pytest.raises(SourceConfigError, match=r"broken.toml: not valid TOML"):
        load_source_config(p)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"colums": {}}, "colums: unknown key"),
        ({"columns": {"id": "id", "user": "u", "usr": "x"}}, "columns.time: required key is missing; columns.usr: unknown key"),
        ({"tokens": {"semantics": "flat", "input_tokenz": "x"}}, "tokens.input_tokenz: unknown key"),
        ({"tokens": {"semantics": "openai"}}, "tokens.semantics: Input should be 'auto', 'anthropic', 'openai_chat', 'openai_responses' or 'flat'"),
        ({"tokens": {"semantics": "openai_chat", "input_tokens": "x"}},
         "tokens: unknown token field 'input_tokens' for semantics 'openai_chat' (expected one of: prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens)"),
        ({"tokens": {"semantics": "auto"}}, "tokens: semantics 'auto' needs usage"),
        ({"tokens": {"semantics": "auto", "usage": "u", "input_tokens": "x"}}, "tokens: semantics 'auto' detects fields per row"),
        ({"breakdowns": {"Request-Type": "x"}}, "breakdowns: breakdown name 'Request-Type' must match"),
        ({"breakdowns": {"kind": {"column": "c", "value": "v"}}}, "breakdowns.kind: give exactly one of column=... or value=..."),
        ({"breakdowns": {"kind": {"value": "v", "path": "a"}}}, "breakdowns.kind: path applies to a json column, not to a constant value"),
        ({"breakdowns": {"kind": {"column": "c", "path": "a..b"}}}, "breakdowns.kind: path has an empty key"),
        ({"source": {"schema": ""}}, "source.schema: String should have at least 1 character"),
        ({"status": {"error_value": ["x"]}}, "status.error_value: unknown key"),
        ({"claude_code": {"root": "/tmp", "user": "a", "user_from_folder": True}}, "claude_code: give exactly one of user = '...' or user_from_folder = true"),
    ],
)
def test_errors_name_the_bad_key(change: dict, expected: str) -> None:
    data = {**MINIMAL, **change}  # a changed section replaces the minimal one
    assert expected in errors_of(data)
    assert errors_of(data).startswith("cfg.toml: ")


def test_token_references_per_semantics() -> None:
    chat = parse_source_config({**MINIMAL, "tokens": {"semantics": "openai_chat", "usage": {"column": "resp", "path": "usage"},
                                                      "cached_tokens": "cached_col"}})
    refs = {k: v for k, v in chat.tokens.refs().items() if v is not None}
    assert refs == {
        "u_prompt_tokens": FieldRef(column="resp", path=("usage", "prompt_tokens")),
        "u_completion_tokens": FieldRef(column="resp", path=("usage", "completion_tokens")),
        "u_prompt_cached_tokens": FieldRef(column="cached_col"),  # explicit beats the usage default
        "u_completion_reasoning_tokens": FieldRef(column="resp", path=("usage", "completion_tokens_details", "reasoning_tokens")),
    }
    flat = parse_source_config({**MINIMAL, "tokens": {"semantics": "flat", "reasoning_tokens": "think"}})
    assert {k: v for k, v in flat.tokens.refs().items() if v is not None} == {"u_reasoning_tokens": FieldRef(column="think")}
    assert FieldRef(column="m", path=("a", "b")).describe() == "m->'a'->>'b'"


def test_dump_round_trips_for_every_example() -> None:
    # `usage-etl source show` prints this dump; it is itself a valid configuration.
    for path in sorted(EXAMPLES.glob("*.toml")):
        cfg = load_source_config(path)
        assert parse_source_config(cfg.model_dump(mode="json", by_alias=True, exclude_none=True)) == cfg, path.name
    assert example("002_ai_usage_log.toml").model_dump(mode="json", by_alias=True, exclude_none=True)["columns"] == {
        "id": "id", "time": "created_at", "user": "user_id", "conversation": "session_id", "model": "model_used", "status": "status"}
