"""Parsing: bytes in, Event out (line formats, folding, field extraction, shipper envelopes, time, secret masking, host/service naming)."""
