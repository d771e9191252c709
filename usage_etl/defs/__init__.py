"""Dagster wiring: assets, checks, sensors and resources over the plain functions of the data flow.

The beta parameters used here on purpose (`backfill_policy`, `allow_nonexistent_upstream_partitions`,
partitioned checks) would print one warning per use every time the code location loads; they are
silenced when the code location loads, so `make ui` starts quietly.
"""

import warnings

import dagster as dg

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
