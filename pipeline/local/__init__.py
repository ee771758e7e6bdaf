"""Local runs without Kafka or Elasticsearch: analyze, watch, trace, request summaries."""
