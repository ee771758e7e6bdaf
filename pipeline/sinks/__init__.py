"""Sinks: Elasticsearch (client, indexing policy, index templates, queries) terminal rendering, and the dead-letter file of the local runs."""
