"""One module per backward-design stage: plain functions that build each table, and the
thin Dagster assets and checks around them."""
