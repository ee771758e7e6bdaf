"""Streaming: the only place faust, aiokafka and kafka-python are imported (worker, stages, state, ship, metrics)."""
