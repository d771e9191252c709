"""The asset checks in a real Dagster instance: per-partition results, blocking, the rollup gate.

Dates are relative to today (D1 = 2 days ago, D2 = yesterday, start date D1) so that the
completeness check sees every daily partition up to the latest complete day.
"""

from datetime import datetime, timedelta, timezone

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from check_data import U1, messages
from usage_etl import cli, sample, store
from usage_etl.defs import asset_checks
from usage_etl.defs import assets
from usage_etl.checks import rules as checks
from usage_etl.defs import partitions
from usage_etl.defs import runs
from usage_etl.defs.resources import PostgresResource

TODAY = datetime.now(timezone.utc).date()
D1_DATE = TODAY - timedelta(days=2)
D1, D2 = D1_DATE.isoformat(), (TODAY - timedelta(days=1)).isoformat()


@pytest.fixture
def env(settings, engine, db_url):
    """Settings starting at D1, the clean sample in the source, the definitions built for them."""
    cfg = settings.replace(start_date=D1_DATE)
    sample.write(engine, cfg, messages(D1_DATE))
    defs = assets.build_assets(cfg)
    return {
        "cfg": cfg,
        "assets": defs,
        "resources": {"db": PostgresResource(database_url=db_url.render_as_string(hide_password=False))},
        "pdefs": partitions.build(cfg),
    }


def run(env, instance, selection, keys: tuple[str, str] | None = None, **kw) -> dg.ExecuteInProcessResult:
    tags = {runs.RANGE_START: keys[0], runs.RANGE_END: keys[1]} if keys else {}
    return dg.materialize(
        env["assets"], selection=selection, instance=instance, resources=env["resources"],
        tags=tags, raise_on_error=False, **kw,
    )


def evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str | None], dg.AssetCheckEvaluation]:
    return {(e.check_name, e.partition): e for e in result.get_asset_check_evaluations()}


def rollup_keys(env, period_type: str) -> tuple[str, str]:
    pdef = env["pdefs"][period_type]
    first, last = (pdef.get_partition_key_for_timestamp(datetime.combine(d, datetime.min.time(), timezone.utc).timestamp())
                   for d in (D1_DATE, TODAY - timedelta(days=1)))
    return first, last


def partition_status(instance, asset_key, names, keys) -> dict[tuple[str, str], str]:
    info = instance.event_log_storage.get_asset_check_partition_info(
        [dg.AssetCheckKey(asset_key, n) for n in names], partition_keys=list(keys)
    )
    return {(i.check_key.name, i.partition_key): i.latest_execution_status.value for i in info}


def test_clean_run_all_checks_pass_per_partition(env):
    daily, weekly, monthly = env["assets"]
    with dg.instance_for_test() as instance:
        r = run(env, instance, [daily], (D1, D2))
        assert r.success
        evs = evaluations(r)
        assert set(evs) == {("integrity", D1), ("integrity", D2)}  # one result per partition
        assert all(e.passed for e in evs.values()), [e.description for e in evs.values() if not e.passed]
        d1 = evs[("integrity", D1)]
        assert d1.blocking and d1.description.startswith("6 rules pass")
        rules = [rule.name for rule in checks.rules_for("daily")]
        assert {k: v.value for k, v in d1.metadata.items() if k.endswith("/passed")} == {f"{r}/passed": True for r in rules}
        assert d1.metadata["reconciles_with_raw/users_expected"] == dg.MetadataValue.int(2)
        assert d1.metadata["reconciles_with_raw/total_tokens_expected"] == dg.MetadataValue.int(475)  # 460 (U1) + 15 (U2), by hand
        assert d1.metadata["reconciles_with_raw/messages_expected"] == dg.MetadataValue.int(3)
        assert "reconciles_with_raw/expected_totals" not in d1.metadata  # tables and lists only come with a failure
        assert evs[("integrity", D2)].metadata["quarantine_rate/raw_rows"] == dg.MetadataValue.int(2)
        assert partition_status(instance, daily.key, ["integrity"], (D1, D2)) == {
            ("integrity", D1): "SUCCEEDED", ("integrity", D2): "SUCCEEDED"}
        info = instance.event_log_storage.get_asset_check_partition_info([dg.AssetCheckKey(daily.key, "integrity")], partition_keys=[D1])
        assert info[0].is_current  # tied to the partition's latest materialization

        for asset, period_type in ((weekly, "weekly"), (monthly, "monthly")):
            keys = rollup_keys(env, period_type)
            r = run(env, instance, [asset], keys)
            assert r.success
            evs = evaluations(r)
            in_range = env["pdefs"][period_type].get_partition_keys_in_range(dg.PartitionKeyRange(*keys))
            assert set(evs) == {("integrity", k) for k in in_range}
            assert all(e.metadata["rollup_matches_daily/passed"].value for e in evs.values())
            assert all(e.passed for e in evs.values()), [e.description for e in evs.values() if not e.passed]


def test_demo_data_passes_every_check(settings, engine, db_url):
    """The data of `usage-etl demo` (`usage-etl generate` defaults: 0.5% bad rows, 1 unpriced
    message in 2,000), 3 days instead of 30, through Dagster: every partition's check passes, no
    WARN, although each day has unpriced messages and quarantined rows."""
    cfg = settings.replace(start_date=TODAY - timedelta(days=3))
    spec = sample.SampleSpec(days=3, end=TODAY)  # the demo's users, messages a day, seed and fractions
    assert (spec.users, spec.messages_per_day, spec.bad_fraction, spec.unpriced_fraction) == (200, 2000, 0.005, 0.0005)
    sample.write(engine, cfg, sample.generate_frame(spec, cfg.timezone))
    resources = {"db": PostgresResource(database_url=db_url.render_as_string(hide_password=False))}
    defs = assets.build_assets(cfg)
    evs: dict[tuple[str, str], dg.AssetCheckEvaluation] = {}
    with dg.instance_for_test() as instance:
        for g in runs.GRANULARITIES:
            keys = runs.partition_keys(g, cfg.start_date, TODAY - timedelta(days=1), cfg)
            [result] = runs.materialize_range(g, keys, inst=instance, resources=resources, assets=defs)
            assert result.success
            evs |= {(g, e.partition): e for e in result.get_asset_check_evaluations()}
    daily = {k: e for (g, k), e in evs.items() if g == "daily"}
    assert len(daily) == 3 and {g for g, _ in evs} == {"daily", "weekly", "monthly"}
    assert {k: e.description for k, e in evs.items() if not e.passed} == {}
    for e in daily.values():
        assert e.metadata["pricing_coverage/unpriced_messages"] == dg.MetadataValue.int(1)
        assert e.metadata["quarantine_rate/rejected_rows"].value > 0
    with engine.connect() as conn:
        unpriced = conn.execute(sa.text("SELECT model, sum(unpriced_message_count) FROM user_token_usage_by_model "
                                        "WHERE period_type = 'daily' GROUP BY model HAVING sum(unpriced_message_count) > 0")).all()
    assert unpriced == [(sample.UNPRICED_MODEL, 3)]


def test_single_partition_run_records_its_partition(env):
    daily = env["assets"][0]
    with dg.instance_for_test() as instance:
        r = run(env, instance, [daily], partition_key=D2)
        assert r.success
        assert {k for _, k in evaluations(r)} == {D2}
        check = evaluations(r)[("integrity", D2)]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN  # only a WARN rule failed
        assert check.metadata["completeness/gaps"].value == [D1]
        assert check.description == f"completeness (WARN): 1 daily partition(s) missing: {D1}"
        # A WARN does not block the rollup of the day's week.
        week = env["pdefs"]["weekly"].get_partition_key_for_timestamp(
            datetime.combine(TODAY - timedelta(days=1), datetime.min.time(), timezone.utc).timestamp())
        assert run(env, instance, [env["assets"][1]], (week, week)).success


def corrupt_daily_output(monkeypatch, user: str = U1, extra: int = 7) -> None:
    """A fault in the pipeline: `user`'s daily output_tokens come out `extra` too high."""
    real = store.summary_rows

    def corrupt(frame, window):
        rows = real(frame, window)
        if window.period_type != "daily":
            return rows
        return rows.with_columns(output_tokens=pl.col("output_tokens") + (pl.col("user_id") == user).cast(pl.Int64) * extra)

    monkeypatch.setattr(store, "summary_rows", corrupt)


def test_corrupted_summary_fails_reconciliation_and_weekly_does_not_run(env, engine, monkeypatch):
    daily, weekly, _ = env["assets"]
    with dg.instance_for_test() as instance:
        corrupt_daily_output(monkeypatch)
        r = run(env, instance, [daily], (D1, D2))
        assert not r.success  # blocking check failed with ERROR
        failure = next(e for e in r.all_events if e.event_type_value == "STEP_FAILURE")
        assert failure.event_specific_data.error.cls_name == "DagsterAssetCheckFailedError"
        assert instance.get_materialized_partitions(daily.key) == {D1, D2}  # written, then found wrong
        evs = evaluations(r)
        d1, d2 = evs[("integrity", D1)], evs[("integrity", D2)]
        assert not d1.passed and d1.severity == dg.AssetCheckSeverity.ERROR
        assert d1.description.startswith(
            f"reconciles_with_raw (ERROR): 1 user(s) differ from raw; first: {U1} output_tokens expected 130, actual 137")
        assert f"| {U1} | output_tokens | 130 | 137 |" in d1.metadata["reconciles_with_raw/first_differences"].value
        assert d1.metadata["reconciles_with_raw/expected_totals"].value["output_tokens"] == 135
        assert d1.metadata["reconciles_with_raw/actual_totals"].value["output_tokens"] == 142
        # total no longer adds up on the user row and its two by-model rows (both went through summary_rows)
        assert d1.metadata["keys_and_values/total_mismatch"] == dg.MetadataValue.int(3)
        assert d2.description.startswith(f"reconciles_with_raw (ERROR): 1 user(s) differ from raw; first: {U1} output_tokens expected 40, actual 47")

        keys = rollup_keys(env, "weekly")
        w = run(env, instance, [weekly], keys)
        assert not w.success
        failure = next(e for e in w.all_events if e.event_type_value == "STEP_FAILURE")
        assert f"{D1}: reconciles_with_raw (ERROR): 1 user(s) differ from raw" in failure.event_specific_data.error.message
        assert not [e for e in w.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
        assert instance.get_materialized_partitions(weekly.key) == set()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM user_token_usage WHERE period_type = 'weekly'")).scalar_one() == 0

        # Fixed: rematerializing the days rewrites the rows, the checks pass, the week rolls up.
        monkeypatch.undo()
        assert run(env, instance, [daily], (D1, D2)).success
        assert run(env, instance, [weekly], keys).success


def test_backfill_stops_before_weekly_when_daily_check_fails(settings, engine, tmp_path, monkeypatch):
    """`usage-etl backfill` runs days, then weeks: a pipeline fault caught by the blocking daily
    check fails the daily run, and no weekly run is launched."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    sample.write(engine, settings, messages(D1_DATE))  # the CLI's assets read the default source table
    corrupt_daily_output(monkeypatch)
    res = CliRunner().invoke(cli.main, ["backfill", "--start", D1, "--end", D2])
    assert res.exit_code == 1, res.output
    assert "daily" in res.output and "FAILED" in res.output
    assert "weekly:" not in res.output
    instance = dg.DagsterInstance.get()
    assert instance.get_materialized_partitions(runs.USAGE_ASSETS[1].key) == set()
    assert instance.get_runs(filters=dg.RunsFilter(job_name="usage_etl_weekly")) == []  # skipped, never launched
    status = partition_status(instance, runs.USAGE_ASSETS[0].key, ["integrity"], (D1, D2))
    assert status == {("integrity", D1): "FAILED", ("integrity", D2): "FAILED"}


def test_combine_severity_and_description():
    ok = checks.CheckOutcome("keys_and_values", True, "fine", {"rows": 2})
    warn = checks.CheckOutcome("pricing_coverage", False, "1/10 unpriced", {"unpriced_models": ["m"]})
    err = checks.CheckOutcome("reconciles_with_raw", False, "1 user(s) differ", {"first_differences": [{"user_id": "u", "measure": "x"}]})
    passed = asset_checks.combine([ok])
    assert passed["passed"] and passed["description"] == "1 rules pass: keys_and_values"
    warned = asset_checks.combine([ok, warn])
    assert not warned["passed"] and warned["severity"] == dg.AssetCheckSeverity.WARN
    assert warned["metadata"]["keys_and_values/rows"] == 2 and warned["metadata"]["pricing_coverage/passed"] is False
    failed = asset_checks.combine([ok, warn, err])
    assert failed["severity"] == dg.AssetCheckSeverity.ERROR
    assert failed["description"] == "reconciles_with_raw (ERROR): 1 user(s) differ; pricing_coverage (WARN): 1/10 unpriced"
    assert failed["metadata"]["reconciles_with_raw/first_differences"].value == "| user_id | measure |\n|---|---|\n| u | x |"


def test_a_rule_blocks_exactly_when_its_failure_alone_makes_the_check_error():
    # keys_and_values is ERROR, so it blocks like the other ERROR rules; WARN rules never block.
    assert {r.name: r.blocking for r in checks.RULES} == {
        "reconciles_with_raw": True, "rollup_matches_daily": True, "keys_and_values": True,
        "completeness": False, "pricing_coverage": False, "quarantine_rate": False, "no_duplicate_raw_rows": False}
    for rule in checks.RULES:
        combined = asset_checks.combine([checks.CheckOutcome(rule.name, False, "broken")])
        assert not combined["passed"]
        assert (combined["severity"] == dg.AssetCheckSeverity.ERROR) is rule.blocking, rule.name


def test_daily_and_weekly_cannot_share_a_run(env):
    """Why the rollups check their days themselves: Dagster's blocking only stops assets of the
    same run, and a daily and a weekly partition cannot be in one run."""
    with dg.instance_for_test() as instance, pytest.raises(dg.DagsterInvalidDefinitionError):
        run(env, instance, env["assets"][:2], (D1, D2))
