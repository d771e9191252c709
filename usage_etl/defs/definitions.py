"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here."""

import dagster as dg

from usage_etl.defs import automation
from usage_etl.defs import late_data
from usage_etl.defs.assets import PARTITIONS, SETTINGS, USAGE_ASSETS
from usage_etl.defs import runs
from usage_etl.defs.resources import PostgresResource
from usage_etl.settings import AutomationSettings

AUTOMATION = AutomationSettings.from_env()

defs = dg.Definitions(
    assets=[late_data.raw_asset(SETTINGS, PARTITIONS["daily"], AUTOMATION.owners), *USAGE_ASSETS],
    sensors=[
        automation.build_nightly_sensor(SETTINGS, AUTOMATION, PARTITIONS),
        late_data.build_sensor(SETTINGS, AUTOMATION, PARTITIONS),
        automation.automation_sensor(),
    ],
    jobs=runs.jobs(USAGE_ASSETS),
    resources={"db": PostgresResource()},
)
