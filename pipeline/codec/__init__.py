"""The one place that maps domain types to JSON and back (orjson).

- ``core``: ``dumps``/``loads`` of any document;
- ``ecs``: the ECS document of an Event and back, event ids, request keys,
  the events topic's records;
- ``caps``: size caps by encoded bytes, for every document that leaves the process;
- ``deadletter``: the one dead-letter shape;
- ``state``: versioned snapshots of a stage's state per input partition.
"""
from pipeline.codec.caps import MAX_DOC_BYTES, TRUNCATED, cap, cap_text
from pipeline.codec.core import dumps, loads
from pipeline.codec.deadletter import dead_letter, dead_letter_doc, kafka_position
from pipeline.codec.ecs import (event_from_doc, event_id, event_json, event_record, event_to_doc,
                                read_event_record, request_key)
from pipeline.codec.state import StateRefused, pack_state, unpack_state

__all__ = ["MAX_DOC_BYTES", "TRUNCATED", "StateRefused", "cap", "cap_text", "dead_letter",
           "dead_letter_doc", "dumps", "event_from_doc", "event_id", "event_json", "event_record",
           "event_to_doc", "kafka_position", "loads", "pack_state", "read_event_record",
           "request_key", "unpack_state"]
