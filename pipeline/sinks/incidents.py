"""The incidents stored in Elasticsearch, queried back (``osloscope incidents``)."""
from __future__ import annotations


def query(es_settings, *, status: str | None = None, type_: str | None = None,
          host: str | None = None, severity: str | None = None, since: str | None = None,
          limit: int = 50, client=None) -> list[dict]:
    """Incident documents, most recently seen first."""
    from pipeline.sinks.elasticsearch import make_client

    filters: list[dict] = []
    if status:
        filters.append({"term": {"status": status}})
    if type_:
        filters.append({"term": {"type": type_}})
    if host:
        filters.append({"term": {"hosts": host}})
    if severity:
        filters.append({"term": {"severity": severity}})
    if since:
        filters.append({"range": {"last_seen": {"gte": since}}})
    own = client is None
    client = client or make_client(es_settings)
    try:
        if not client.indices.exists(index=es_settings.incidents_index):
            return []
        res = client.search(index=es_settings.incidents_index, size=limit,
                            query={"bool": {"filter": filters}} if filters else {"match_all": {}},
                            sort=[{"last_seen": {"order": "desc"}}, {"id": {"order": "asc"}}])
        return [hit["_source"] for hit in res["hits"]["hits"]]
    finally:
        if own:
            client.close()
