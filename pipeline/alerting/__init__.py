"""Alerting: the notifier (consumer, grouping, payloads, delivery, outbox) and silences."""
