"""The `usage-etl` command as a whole: every option documented, the instance it records runs in."""

from __future__ import annotations

from pathlib import Path

import click
import dagster as dg
from click.testing import CliRunner

from usage_etl.defs import runs
from usage_etl.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _commands(group: click.Group, path: str = "usage-etl"):
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")


def test_every_option_of_every_command_has_help_text():
    commands = dict(_commands(main))
    assert {"usage-etl backfill", "usage-etl check", "usage-etl demo", "usage-etl prices show", "usage-etl reprice"} <= commands.keys()
    undocumented = [f"{path} {opt.opts[0]}" for path, cmd in commands.items() for opt in cmd.params
                    if isinstance(opt, click.Option) and not (opt.help or "").strip()]
    assert undocumented == []
    out = CliRunner().invoke(main, ["check", "--help"])
    assert out.exit_code == 0 and "Which assets' partitions to check" in out.output


def test_instance_seeds_a_missing_dagster_yaml_from_the_local_config(tmp_path, monkeypatch):
    home = tmp_path / "home"  # not created yet, as on a first `usage-etl backfill`
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert runs.local_instance_config() == ROOT / "deploy" / "dagster.local.yaml"
    inst = runs.instance()
    try:
        assert (home / "dagster.yaml").read_text() == (ROOT / "deploy" / "dagster.local.yaml").read_text()
        assert [p.name for p in home.iterdir() if p.name.startswith(".dagster.yaml")] == []  # no partial copy left
        assert isinstance(inst.run_coordinator, dg.QueuedRunCoordinator)
        assert inst.get_concurrency_config().pool_config.default_pool_limit == 1
        assert not inst.telemetry_enabled
    finally:
        inst.dispose()
    # an existing dagster.yaml is the user's: left as it is
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    runs.instance().dispose()
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
