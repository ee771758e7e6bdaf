"""NUL blocks and binary garbage next to records (issue 17): never folded into
a record's message, always kept in a dead letter, every line and byte counted
once (log.lines / log.bytes; see pipeline/parsing/fold.py)."""
from __future__ import annotations

import json
import random

import pytest
from support import parse_text, run_main

from pipeline.parsing.fold import is_binary

HDR = "2017-06-06 10:00:{s:02d}.000 {pid} {level} nova.compute.manager [-] "


def line(s: int, msg: str, pid: int = 7, level: str = "INFO") -> bytes:
    return (HDR.format(s=s, pid=pid, level=level) + msg).encode()


def counted(events, data: bytes) -> None:
    """Every line once and every byte once over the events and dead letters."""
    lines = data.splitlines(keepends=True)
    assert sum(ev.lines for ev in events) == len(lines)
    assert sum(ev.nbytes for ev in events) == len(data) - data.count(b"\n")


def test_a_nul_block_after_a_crash_truncated_record_is_a_dead_letter_not_its_message():
    """A crash leaves the last record cut short, then zeros where the lost writes were;
    the restarted service appends its next record right after them, on the same line."""
    head = line(0, "Starting instance 3f2c")
    restart = line(5, "Service started", pid=8)
    data = head + b"\x00" * 4096 + restart + b"\n" + line(6, "ok", pid=8) + b"\n"
    events = parse_text(data)
    logs = sorted((ev for ev in events if ev.kind == "log"), key=lambda ev: ev.offset)
    assert [ev.message for ev in logs] == ["Starting instance 3f2c", "Service started", "ok"]
    assert all("\x00" not in ev.original for ev in logs)
    [nul] = [ev for ev in events if ev.kind == "unparsed"]
    assert nul.original == "\x00" * 4096 and nul.reason.startswith("4096 NUL bytes: what a crash leaves")
    assert nul.offset == len(head) and logs[1].offset == len(head) + 4096     # exact byte offsets
    # the line counts in the record that took its first byte, with all its bytes
    assert (logs[0].lines, logs[0].nbytes) == (1, len(head) + 4096 + len(restart))
    assert (nul.lines, logs[1].lines) == (0, 0)
    counted(events, data)


def test_text_after_nul_bytes_that_starts_no_record_stays_with_them():
    data = line(0, "boom", level="ERROR") + b"\n" + b"\x00\x00\x00\xff\xfe garbage\x00\x00 more\n"
    events = parse_text(data)
    [rec] = [ev for ev in events if ev.kind == "log"]
    assert rec.message == "boom"
    [letter] = [ev for ev in events if ev.kind == "unparsed"]
    assert letter.original == "\x00\x00\x00\\xff\\xfe garbage\x00\x00 more"
    assert letter.reason.startswith("5 NUL bytes and text that starts no record: ")
    assert (letter.lines, letter.offset) == (1, len(line(0, "boom", level="ERROR")) + 1)
    counted(events, data)


def test_binary_garbage_after_a_record_is_a_dead_letter_and_the_record_goes_on():
    rng = random.Random(7)
    garbage = bytes(rng.randrange(256) for _ in range(300))
    garbage = garbage.replace(b"\n", b"").replace(b"\r", b"").replace(b"\x00", b"\x01")   # one line, no NUL
    data = (line(0, "Unexpected error", level="ERROR") + b"\n" + garbage + b"\n"
            + b"  detail that belongs to the record\n" + line(1, "next") + b"\n")
    events = parse_text(data)
    logs = [ev for ev in events if ev.kind == "log"]
    assert logs[0].message == "Unexpected error\n  detail that belongs to the record"
    assert logs[0].lines == 2
    [letter] = [ev for ev in events if ev.kind == "unparsed"]
    assert letter.reason == "binary data: not folded into the record before it" and letter.lines == 1
    counted(events, data)


@pytest.mark.parametrize("text", [
    "  Détails de l'erreur: caf\xe9".encode("latin-1"),          # another encoding is still text
    "  \u0421\u0435\u0440\u0432\u0435\u0440 \u043d\u0435\u0434\u043e\u0441\u0442\u0443\u043f\u0435\u043d".encode("cp1251"),
    b"  \x1b[31mcoloured\x1b[0m output\twith a tab",
    b"  RESP BODY: {\"error\": {\"code\": 401}}",
])
def test_text_in_another_encoding_or_with_colours_still_folds(text):
    data = line(0, "failed", level="ERROR") + b"\n" + text + b"\n"
    events = parse_text(data)
    assert [ev.kind for ev in events] == ["log"] and events[0].lines == 2
    counted(events, data)


def test_what_is_binary():
    assert is_binary(bytes(range(1, 40)).decode("latin-1"))
    assert is_binary(b"\x01\x02\x03\xff\xfe\xfd".decode("utf-8", "backslashreplace"))
    assert not is_binary("plain text with one \x07 bell among many ordinary characters")
    assert not is_binary(b"caf\xe9 \xe0 la cr\xe8me".decode("utf-8", "backslashreplace"))
    assert not is_binary("\x1b[1;31mERROR\x1b[0m\tcolours and tabs")


def test_analyze_writes_nul_blocks_and_garbage_to_its_dead_letter_file(tmp_path, capsys):
    """The README's promise: binary garbage goes to osloscope-deadletter.jsonl, with the
    reason and the byte offset; the records around it keep only their own text."""
    log = tmp_path / "cmp-1" / "nova" / "nova-compute.log"
    log.parent.mkdir(parents=True)
    data = (line(0, "Instance spawned") + b"\x00" * 512 + b"\n" + b"\x01\x02\x03\x04\xff\xfe\xfd\xfc\n"
            + line(9, "Service started", pid=8) + b"\n")
    log.write_bytes(data)
    dl = tmp_path / "dead.jsonl"
    rc, _out, err = run_main(capsys, "analyze", tmp_path, "--dead-letter", dl, "--jobs", "1")
    assert rc == 0, err
    letters = [json.loads(x) for x in dl.read_text().splitlines()]
    assert [(d["reason"].split(":")[0], d["offset"], d["lines"], d["bytes"]) for d in letters] == [
        ("512 NUL bytes", len(line(0, "Instance spawned")), 0, 0),
        ("binary data", len(line(0, "Instance spawned")) + 513, 1, 8)]
    assert letters[0]["raw"] == "\x00" * 512
    assert "3 lines (2 in 2 records, 1 in 2 dead letters)" in err
