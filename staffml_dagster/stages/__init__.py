"""One module per backward-design stage: plain functions that build each table, and the
thin Dagster assets and checks around them."""

import warnings

import dagster as dg

# backfill_policy is marked beta; single-run backfills are what this project relies on
# (tests/test_pipeline_run.py), so the warning on every import is noise.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
# a partitions_def on an asset check is marked preview; the per-partition check on
# validated_questions needs it to read only the run's partitions (tests/test_pipeline_run.py)
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*", category=dg.PreviewWarning)
