"""What the Dagster UI shows: raw days observed with their real row counts (and stay fresh), the
period in progress marked as such, column schemas matching the database, per-rule check lines."""

from __future__ import annotations

from datetime import date

import dagster as dg
import sqlalchemy as sa
from dagster import instance_for_test
from orchestration_helpers import Location, freeze_time, insert, message, utc

from usage_etl.checks import rules as checks
from usage_etl.defs import asset_checks, catalog, late_data, runs
from usage_etl.defs.dagster_internals import StaleStatus, get_stale_status_resolver
from usage_etl.defs.resources import PostgresResource
from usage_etl.settings import AutomationSettings
from usage_etl.sources import fingerprint

DAILY = dg.AssetKey("daily_user_usage")


def _latest_observation(inst: dg.DagsterInstance, day: str) -> dg.AssetObservation:
    [record] = inst.fetch_observations(dg.AssetRecordsFilter(asset_key=late_data.RAW_KEY, asset_partitions=[day]), limit=1).records
    return record.asset_observation


def test_raw_days_are_observed_with_their_row_counts_and_the_days_stay_fresh_until_a_late_row(engine, settings):
    s = settings.replace(start_date=date(2026, 11, 1))
    loc = Location(s)
    insert(engine, s, [
        message(1, 1, utc(2026, 11, 1, 8), 100, 10),
        message(2, 1, utc(2026, 11, 1, 9), 100, 10),
        message(3, 2, utc(2026, 11, 1, 23, 59), 200, 20, conversation=2),
        message(4, 1, utc(2026, 11, 2, 0, 0), 100, 10),
    ])
    days = ["2026-11-01", "2026-11-02", "2026-11-03"]
    with instance_for_test() as inst, freeze_time(utc(2026, 11, 4, 9)):
        assert runs.observe_raw(days, inst=inst, engine=engine, settings=s) == 3
        seen = {d: _latest_observation(inst, d) for d in days}
        assert {d: o.metadata["rows"].value for d, o in seen.items()} == {"2026-11-01": 3, "2026-11-02": 1, "2026-11-03": 0}
        assert seen["2026-11-03"].tags[late_data.DATA_VERSION_TAG] == "empty"
        with engine.connect() as conn:
            now = fingerprint.current_fingerprints(conn, s, date(2026, 11, 1), date(2026, 11, 3))
        assert [seen[d].tags[late_data.DATA_VERSION_TAG] for d in days[:2]] == now["version"].to_list()
        assert seen["2026-11-01"].metadata["fingerprint"].value == now["version"][0]

        assert loc.materialize(inst, "daily", days).success
        resolver = get_stale_status_resolver(inst, [loc.raw, *loc.assets])
        assert {d: resolver.get_status(DAILY, d) for d in days} == {d: StaleStatus.FRESH for d in days}

        # a late row on the 2nd: the late-data sensor observes the day anew, and only it is stale
        insert(engine, s, [message(5, 3, utc(2026, 11, 2, 12), 5, 5)])
        found = loc.sense(loc.late_sensor, inst, utc(2026, 11, 4, 9, 30), None)
        assert [(e.partition, e.metadata["rows"].value, e.metadata["rows_at_materialization"].value) for e in found.asset_events] == [("2026-11-02", 2, 1)]
        assert all(isinstance(e, dg.AssetObservation) for e in found.asset_events)
        resolver = get_stale_status_resolver(inst, [loc.raw, *loc.assets])
        assert {d: resolver.get_status(DAILY, d) for d in days} == {
            "2026-11-01": StaleStatus.FRESH, "2026-11-02": StaleStatus.STALE, "2026-11-03": StaleStatus.FRESH}
        assert inst.fetch_materializations(late_data.RAW_KEY, limit=1).records == []  # never materialized

        # the UI's "Observe" of one day records the same observation as the commands do
        job = dg.define_asset_job("observe", selection=[loc.raw])
        defs = dg.Definitions(assets=[loc.raw], jobs=[job], resources={"db": PostgresResource()})
        assert defs.resolve_job_def("observe").execute_in_process(instance=inst, partition_key="2026-11-02").success
        again = _latest_observation(inst, "2026-11-02")
        assert (again.metadata["rows"].value, again.tags[late_data.DATA_VERSION_TAG]) == (2, found.asset_events[0].tags[late_data.DATA_VERSION_TAG])


def test_the_month_that_started_today_is_materialized_empty_and_marked_in_progress(engine, settings):
    s = settings.replace(start_date=date(2026, 11, 1))
    loc = Location(s)
    insert(engine, s, [message(1, 1, utc(2026, 11, 30, 8), 100, 10)])
    with instance_for_test() as inst, freeze_time(utc(2026, 12, 1, 11)):
        assert runs.periods_in_progress("monthly", date(2026, 11, 30), s) == ["2026-12-01"]
        assert runs.periods_in_progress("weekly", date(2026, 11, 30), s) == []  # the week of the 30th has that day
        assert runs.periods_in_progress("daily", date(2026, 11, 30), s) == []
        assert loc.materialize(inst, "daily", ["2026-11-30"]).success
        assert loc.materialize(inst, "monthly", ["2026-11-01"]).success
        assert loc.materialize(inst, "monthly", ["2026-12-01"]).success
        md = {}
        for month in ("2026-11-01", "2026-12-01"):
            [r] = inst.fetch_materializations(dg.AssetRecordsFilter(asset_key=loc.monthly.key, asset_partitions=[month]), limit=1).records
            md[month] = {k: r.asset_materialization.metadata[k].value for k in ("users", "complete_days", "days_in_period", "in_progress")}
    assert md == {
        "2026-11-01": {"users": 1, "complete_days": 30, "days_in_period": 30, "in_progress": False},
        "2026-12-01": {"users": 0, "complete_days": 0, "days_in_period": 31, "in_progress": True},
    }


def test_column_schemas_match_the_migrated_tables(engine, settings):
    with engine.connect() as conn:
        cols = sa.inspect(conn).get_columns(catalog.SUMMARY_TABLE, schema=settings.schema)
        raw = [c["name"] for c in sa.inspect(conn).get_columns("chat_messages", schema=settings.source_schema)] if sa.inspect(conn).has_table("chat_messages") else None
    assert [c.name for c in catalog.summary_schema().columns] == [c["name"] for c in cols]
    assert all(c.description for c in catalog.summary_schema().columns)
    units = {c.name: c.description for c in catalog.summary_schema().columns}
    assert "tokens" in units["input_tokens"] and "USD" in units["cost_usd"] and "count" in units["message_count"]
    assert [c.name for c in catalog.raw_schema(settings).columns] == ["id", "user_id", "conversation_id", "agent_id", "model", "created_at", "metadata"]
    assert raw is None or raw == [c.name for c in catalog.raw_schema(settings).columns]


def test_raw_source_is_observable_so_the_ui_shows_it_observed_not_missing(settings):
    node = dg.Definitions(assets=[late_data.raw_asset(settings, runs.PARTITIONS["daily"])], resources={"db": PostgresResource()}).resolve_asset_graph().get(late_data.RAW_KEY)
    assert node.is_observable and not node.is_materializable


def test_assets_carry_table_names_schemas_kinds_and_configured_owners(settings, monkeypatch):
    from usage_etl.defs.assets import build_assets

    monkeypatch.setenv("USAGE_ETL_ASSET_OWNERS", "data@example.com, team:analytics")
    auto = AutomationSettings.from_env()
    specs = {spec.key.path[-1]: spec for a in build_assets(settings, auto=auto) for spec in a.specs}
    raw = late_data.raw_asset(settings, runs.PARTITIONS["daily"], auto.owners).specs_by_key[late_data.RAW_KEY]
    for name in ("daily_user_usage", "weekly_user_usage", "monthly_user_usage"):
        spec = specs[name]
        assert spec.metadata["dagster/table_name"] == "public.user_token_usage"
        assert spec.metadata["dagster/column_schema"] == catalog.summary_schema()
        assert set(spec.kinds) == {"polars", "postgres"} and spec.owners == ["data@example.com", "team:analytics"]
        assert spec.description
    assert raw.metadata["dagster/table_name"] == "public.chat_messages" and raw.owners == ["data@example.com", "team:analytics"]
    monkeypatch.delenv("USAGE_ETL_ASSET_OWNERS")
    assert build_assets(settings, auto=AutomationSettings.from_env())[0].specs_by_key[DAILY].owners == []


def test_check_metadata_starts_with_one_line_per_rule():
    ok = checks.CheckOutcome("keys_and_values", True, "2 rows, keys unique")
    warn = checks.CheckOutcome("pricing_coverage", False, "1/10 unpriced | model m\n(see list)")
    md = asset_checks.combine([ok, warn])["metadata"]
    assert list(md)[:2] == sorted(md)[:2] == ["all_rules", "all_rules_detail"]  # the UI sorts metadata by name
    assert md["all_rules"] == "keys_and_values (ERROR) pass; pricing_coverage (WARN) FAIL"
    assert md["all_rules_detail"].value == (
        "| rule | severity | result | detail |\n|---|---|---|---|\n"
        "| keys_and_values | ERROR | pass | 2 rows, keys unique |\n"
        "| pricing_coverage | WARN | FAIL | 1/10 unpriced \\| model m (see list) |"
    )
