"""The worker's stages as plain synchronous objects (the faust app in
``worker.py`` only moves bytes between Kafka, these and Elasticsearch).

``ParseStage``     (parse.py) raw topic -> parse (folding per host + file) ->
                   host-scoped detectors (ENOSPC, auth bursts) -> events keyed
                   by request id, incidents keyed by incident id, dead letters.
``CorrelateStage`` (correlate.py) events topic -> request-scoped detectors
                   (request windows, retry exhaustion, root causes) ->
                   incidents; events and request summaries to index.

Both keep their state per input partition (stage.py) and save it as
versioned JSON after their outputs were acknowledged and before the input
offsets are acked. Outputs carry deterministic ids, so the little that is
emitted twice (a batch whose outputs were acknowledged but whose snapshot
was not written) overwrites itself downstream.
"""
from pipeline.streaming.correlate import CorrelateStage
from pipeline.streaming.parse import ParseStage
from pipeline.streaming.stage import STATE_VERSION, Output, RawMessage, Stage, source_of

__all__ = ["STATE_VERSION", "CorrelateStage", "Output", "ParseStage", "RawMessage", "Stage",
           "source_of"]
