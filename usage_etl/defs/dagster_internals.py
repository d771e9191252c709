"""The only module that imports Dagster's private (`dagster._…`) names.

Dagster 1.13 has no public equivalent for these; each line says what is missing. Everything else
uses the public `dagster` API. `tests/test_dagster_internals.py` imports every name here, so an
upgrade that moves one fails that test by name instead of breaking a sensor at run time.
"""

# A sensor or the CLI requesting ONE backfill over several assets with different partitions
# definitions (days, weeks, months): `RunRequest.for_asset_graph_subset` takes an AssetGraphSubset,
# kept private on purpose (dagster-io/dagster#22681); `RunRequest.for_asset_partition_range` is
# still an open pull request (dagster-io/dagster#34096).
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset

# A partitioned check evaluation must name the materialization it targets, or the check's
# per-partition status is cleared (`AssetCheckEvaluation(target_materialization_data=…)` takes
# this type, which is not exported).
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

# The latest check evaluation of ONE partition: the event-log storage's partition filter is not
# exported (and `get_latest_asset_check_evaluation_record` has no partition argument).
from dagster._core.event_api import PartitionKeyFilter

# Listing active backfills and recording one without a running webserver: `DagsterInstance.
# get_backfills`/`add_backfill` take these types; no public backfill API exists in 1.13 (a
# `launch_backfill` was proposed in dagster-io/dagster#26731 and closed).
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

# Test-only: stale status of a partition (the public form is GraphQL through a webserver), and one
# in-process iteration of the backfill daemon (the public form is a `dagster-daemon` process).
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.backfill import execute_backfill_iteration

__all__ = [
    "AssetCheckEvaluationTargetMaterializationData",
    "AssetGraphSubset",
    "BulkActionStatus",
    "BulkActionsFilter",
    "ModuleTarget",
    "PartitionBackfill",
    "PartitionKeyFilter",
    "StaleStatus",
    "create_test_daemon_workspace_context",
    "execute_backfill_iteration",
    "get_stale_status_resolver",
    "make_new_backfill_id",
]
