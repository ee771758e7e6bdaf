"""Sinks: Elasticsearch (client, indexing policy, index templates, queries) and terminal rendering."""
