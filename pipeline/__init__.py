"""osloscope's runtime: parsing, sources, local runs, streaming, sinks, alerting, operations and the CLI (see README, Layout)."""
