"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here."""

import dagster as dg

from usage_etl.assets import USAGE_ASSETS
from usage_etl.resources import PostgresResource

defs = dg.Definitions(
    assets=USAGE_ASSETS,
    resources={"db": PostgresResource()},
)
