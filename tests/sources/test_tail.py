"""The tailer: growth, partial lines, rotation, truncation, archives,
checkpoints. Time is a fake clock; the files are real files in tmp_path."""
from __future__ import annotations

import gzip
import os
import random
import shutil
import socket

import pytest

from pipeline.sources.files import LogFile, PathError, read_lines
from pipeline.sources.tail import CheckpointError, Checkpoints, Position, Tailer, check_paths, is_archive


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def tick(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def clock():
    return Clock()


def tailer(paths, clock, **kw):
    kw.setdefault("rescan_interval", 0.0)
    kw.setdefault("partial_idle", 5.0)
    kw.setdefault("rotate_linger", 10.0)
    errors = kw.pop("errors", None)
    return Tailer([str(p) for p in paths], clock=clock,
                  on_error=errors.append if errors is not None else None, **kw)


def data(lines) -> bytes:
    return b"".join(ln.data for ln in lines)


def append(path, text: bytes | str) -> None:
    with open(path, "ab") as fh:
        fh.write(text.encode() if isinstance(text, str) else text)


def drain(t, n=3):
    out = []
    for _ in range(n):
        out.extend(t.poll())
    return out


def test_live_tail_starts_at_end_and_follows_appends(tmp_path, clock):
    log = tmp_path / "nova-compute.log"
    log.write_bytes(b"old 1\nold 2\n")
    t = tailer([log], clock)
    assert t.poll() == []
    append(log, "new 1\nnew 2\n")
    lines = t.poll()
    assert [(ln.offset, ln.data) for ln in lines] == [(12, b"new 1\n"), (18, b"new 2\n")]
    src = lines[0].file.source
    assert src.path == str(log) and src.service == "nova-compute" and src.host == "unknown"
    assert t.poll() == []


def test_from_start_reads_existing_lines_with_byte_offsets(tmp_path, clock):
    log = tmp_path / "a.log"
    log.write_bytes(b"x\r\nyy\n\nzzz\n")
    lines = tailer([log], clock, from_start=True).poll()
    assert [(ln.offset, ln.data) for ln in lines] == [(0, b"x\r\n"), (3, b"yy\n"), (6, b"\n"), (7, b"zzz\n")]


def test_layout_host_and_explicit_host(tmp_path, clock):
    (tmp_path / "cmp1" / "nova").mkdir(parents=True)
    log = tmp_path / "cmp1" / "nova" / "nova-compute.log"
    log.write_bytes(b"a\n")
    assert tailer([tmp_path], clock, from_start=True).poll()[0].file.source.host == "cmp1"
    assert tailer([tmp_path], clock, from_start=True, host="h9").poll()[0].file.source.host == "h9"
    assert tailer([tmp_path], clock, from_start=True, layout_hosts=False,
                  default_host="me").poll()[0].file.source.host == "me"


def test_partial_line_waits_for_its_end_then_idle_emission(tmp_path, clock):
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    t = tailer([log], clock)
    t.poll()
    append(log, "one\ntw")
    assert [ln.data for ln in t.poll()] == [b"one\n"]
    clock.tick(4)
    assert t.poll() == []                         # still waiting for the rest
    append(log, "o\nthr")
    lines = t.poll()
    assert [(ln.offset, ln.data) for ln in lines] == [(4, b"two\n")]
    clock.tick(4.9)
    assert t.poll() == []
    clock.tick(0.2)                               # idle 5.1 s: emitted as it is
    lines = t.poll()
    assert [(ln.offset, ln.data) for ln in lines] == [(8, b"thr")]
    append(log, "ee\nfour\n")                     # the rest arrives as its own line
    assert [(ln.offset, ln.data) for ln in t.poll()] == [(11, b"ee\n"), (14, b"four\n")]


def test_rename_rotation_while_the_old_file_is_still_written(tmp_path, clock):
    log = tmp_path / "nova-api.log"
    writer = open(log, "ab", buffering=0)
    t = tailer([tmp_path], clock)
    t.poll()
    writer.write(b"a1\na2\n")
    assert data(t.poll()) == b"a1\na2\n"
    writer.write(b"a3\n")
    os.rename(log, tmp_path / "nova-api.log.1")
    writer.write(b"a4\n")                          # the service has not reopened yet
    new = open(log, "ab", buffering=0)
    new.write(b"b1\n")
    lines = t.poll()
    assert data(lines) == b"a3\na4\nb1\n"          # old file first, then the new one
    assert {ln.file.label for ln in lines} == {str(log)}
    assert lines[0].file.key != lines[-1].file.key
    writer.write(b"a5\n")                          # a straggler after the new file started
    new.write(b"b2\n")
    assert data(t.poll()) == b"a5\nb2\n"
    clock.tick(11)
    assert t.poll() == []
    assert len(t.files) == 1                       # the old file was closed after the linger
    writer.write(b"a6\n")                          # written even later: a rescan sees it grow
    lines = t.poll()
    assert data(lines) == b"a6\n" and lines[0].file.label == str(log) and lines[0].offset == 15
    writer.close()
    new.close()
    assert drain(t) == []


def test_rename_rotation_of_a_single_file_path(tmp_path, clock):
    log = tmp_path / "x.log"
    log.write_bytes(b"")
    t = tailer([log], clock)
    t.poll()
    append(log, "1\n")
    os.rename(log, tmp_path / "x.log.1")
    append(tmp_path / "x.log.1", "2\n")
    assert data(t.poll()) == b"1\n2\n"            # path missing: keep reading the old file
    log.write_bytes(b"3\n")
    assert data(t.poll()) == b"3\n"
    assert data(t.poll()) == b""


def test_copytruncate_reads_the_copy_tail_then_the_file_from_zero(tmp_path, clock):
    log = tmp_path / "cinder-volume.log"
    log.write_bytes(b"")
    t = tailer([tmp_path], clock)
    t.poll()
    first = b"".join(b"2017-06-06 10:00:%02d.000 1 INFO x line %d padding padding\n" % (i, i) for i in range(8))
    append(log, first)
    assert data(t.poll()) == first
    append(log, "late 1\nlate 2 partial")          # never polled before the copy
    shutil.copyfile(log, tmp_path / "cinder-volume.log.1")
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, "after 1\n")
    lines = drain(t)
    assert data(lines) == b"late 1\nlate 2 partial" + b"after 1\n"
    assert {ln.file.label for ln in lines} == {str(log)}
    assert [ln.offset for ln in lines] == [len(first), len(first) + 7, 0]
    assert drain(t) == []


def test_truncation_without_a_copy_restarts_at_zero(tmp_path, clock):
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    t = tailer([log], clock)
    t.poll()
    append(log, "one line that is long enough\n" * 3)
    assert len(t.poll()) == 3
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, "fresh\n")
    assert [(ln.offset, ln.data) for ln in t.poll()] == [(0, b"fresh\n")]


def test_truncate_and_regrow_past_the_position_is_seen_by_the_fingerprint(tmp_path, clock):
    log = tmp_path / "a.log"
    body = b"".join(b"first generation line %03d\n" % i for i in range(20))
    log.write_bytes(b"")
    t = tailer([log], clock)
    t.poll()
    append(log, body)
    assert data(t.poll()) == body
    new = b"".join(b"SECOND generation line %03d\n" % i for i in range(30))
    log.write_bytes(new)                           # truncated and rewritten between two polls
    assert data(drain(t)) == new


def test_archives_are_read_once_and_new_archives_are_not_followed(tmp_path, clock):
    with gzip.open(tmp_path / "nova-compute.log.2.gz", "wb") as fh:
        fh.write(b"gz 1\ngz 2\n")
    (tmp_path / "nova-compute.log.1").write_bytes(b"one 1\n")
    (tmp_path / "nova-compute.log").write_bytes(b"live 1\n")
    t = tailer([tmp_path], clock, from_start=True)
    lines = drain(t)
    assert sorted(ln.data for ln in lines) == [b"gz 1\n", b"gz 2\n", b"live 1\n", b"one 1\n"]
    gz = [ln for ln in lines if ln.file.gz]
    assert [ln.offset for ln in gz] == [0, 5]
    assert len(t.files) == 1                       # only the live file stays open
    append(tmp_path / "nova-compute.log.1", "late\n")
    assert data(drain(t)) == b"late\n"             # a rotated plain file that grows is read on
    with gzip.open(tmp_path / "nova-compute.log.3.gz", "wb") as fh:
        fh.write(b"appeared later\n")
    assert drain(t) == []
    clock.tick(100)
    assert drain(t) == []


def test_without_from_start_archives_are_skipped(tmp_path, clock):
    with gzip.open(tmp_path / "a.log.1.gz", "wb") as fh:
        fh.write(b"old\n")
    (tmp_path / "a.log").write_bytes(b"live\n")
    t = tailer([tmp_path], clock)
    assert drain(t) == []
    assert any(p.complete for p in t.positions())


def test_compressing_a_rotated_file_does_not_read_it_again(tmp_path, clock):
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    t = tailer([tmp_path], clock)
    t.poll()
    body = b"".join(b"2017-06-06 10:00:00.%03d 7 INFO a record number %d\n" % (i, i) for i in range(10))
    append(log, body)
    assert data(t.poll()) == body
    os.rename(log, tmp_path / "a.log.1")
    log.write_bytes(b"next\n")
    assert data(t.poll()) == b"next\n"
    clock.tick(11)
    t.poll()
    with open(tmp_path / "a.log.1", "rb") as src, gzip.open(tmp_path / "a.log.1.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.unlink(tmp_path / "a.log.1")
    assert drain(t) == []


def test_a_file_that_appears_later_is_read_from_its_start(tmp_path, clock):
    (tmp_path / "a.log").write_bytes(b"existing\n")
    t = tailer([tmp_path, str(tmp_path / "*.txt")], clock)
    assert t.poll() == []
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.log").write_bytes(b"b1\nb2\n")
    (tmp_path / "screen-n-cpu.txt").write_bytes(b"c1\n")
    lines = t.poll()
    assert sorted(ln.data for ln in lines) == [b"b1\n", b"b2\n", b"c1\n"]
    assert {ln.file.source.service for ln in lines} == {"b", "nova-compute"}


def test_deleted_file_is_read_to_its_end_then_closed(tmp_path, clock):
    log = tmp_path / "a.log"
    fh = open(log, "ab", buffering=0)
    t = tailer([tmp_path], clock)
    t.poll()
    fh.write(b"1\n")
    os.unlink(log)
    fh.write(b"2\npart")
    assert data(t.poll()) == b"1\n2\n"
    clock.tick(11)
    assert data(t.poll()) == b"part"               # closing a rotated file emits its partial line
    assert t.files == {}
    fh.close()
    assert t.poll() == []


def test_errors_are_reported_never_raised(tmp_path, clock, monkeypatch):
    (tmp_path / "good.log").write_bytes(b"ok\n")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "socket.log"))
    errors: list[str] = []
    try:
        t = tailer([tmp_path, tmp_path / "gone.log"], clock, from_start=True, errors=errors)
        lines = drain(t)
    finally:
        sock.close()
    assert data(lines) == b"ok\n"
    assert any("socket.log: not a regular file" in e for e in errors)
    # a file that cannot be opened: reported once, retried at every rescan
    (tmp_path / "locked.log").write_bytes(b"secret\n")
    real_open = open

    def deny(path, *a, **kw):
        if str(path).endswith("locked.log"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr("builtins.open", deny)
    assert drain(t) == []
    assert sum("locked.log: cannot read: Permission denied" in e for e in errors) == 1
    monkeypatch.undo()
    assert data(drain(t)) == b"secret\n"


def test_binary_garbage_and_huge_lines_lose_no_byte(tmp_path, clock):
    rnd = random.Random(7)
    garbage = bytes(rnd.randrange(256) for _ in range(300_000))
    huge = b"H" * (2 * (1 << 20) + 123) + b"\n"
    body = b"start\n" + garbage + b"\n" + huge + b"\x00\xff tail\n"
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    t = tailer([log], clock)
    t.poll()
    append(log, body)
    lines = drain(t, 5)
    assert data(lines) == body
    assert max(len(ln.data) for ln in lines) <= 1 << 20
    expected = list(read_lines(LogFile(str(log), None, len(body))))
    assert [(ln.offset, ln.data) for ln in lines] == expected
    for ln in lines:
        assert body[ln.offset:ln.offset + len(ln.data)] == ln.data


def test_checkpoints_resume_without_loss_or_duplication(tmp_path, clock):
    log = tmp_path / "nova-conductor.log"
    log.write_bytes(b"a\nb\n")
    cps = Checkpoints(str(tmp_path / "cp"))
    t = tailer([tmp_path], clock, checkpoints=cps.load(), from_start=True)
    got = data(t.poll())
    append(log, "c\npartial")
    got += data(t.poll())
    cps.update(t.positions())
    assert cps.save(keep=[p.key for p in t.positions()])
    assert not cps.save()                           # nothing changed: nothing written
    t.close()
    append(log, " done\nd\n")
    cps2 = Checkpoints(str(tmp_path / "cp"))
    t2 = tailer([tmp_path], clock, checkpoints=cps2.load())   # not from_start: the checkpoint wins
    got += data(t2.poll())
    assert got == log.read_bytes()
    (pos,) = cps2.load().values()
    assert pos.path == str(log) and pos.offset == 6 and pos.fp_len == 13


def test_rotation_while_stopped_resumes_the_old_file_then_the_new_one(tmp_path, clock):
    log = tmp_path / "a.log"
    log.write_bytes(b"1\n2\n")
    cps = Checkpoints(str(tmp_path / "cp"))
    t = tailer([tmp_path], clock, from_start=True)
    got = data(t.poll())
    cps.update(t.positions())
    cps.save()
    t.close()
    append(log, "3\n")
    os.rename(log, tmp_path / "a.log.1")
    log.write_bytes(b"4\n")
    t2 = tailer([tmp_path], clock, checkpoints=cps.load())
    lines = drain(t2)
    assert data(lines) == b"3\n4\n"
    assert {ln.file.label for ln in lines} == {str(log)}
    assert got + data(lines) == b"1\n2\n3\n4\n"


def test_inode_reuse_is_detected_by_the_fingerprint(tmp_path, clock):
    log = tmp_path / "a.log"
    log.write_bytes(b"a brand new file\nsecond\n")
    st = os.stat(log)
    stale = Position(str(log), st.st_dev, st.st_ino, 17, "0" * 40, 40, False, 1.0)   # same inode, other content
    lines = tailer([tmp_path], clock, checkpoints={stale.key: stale}).poll()
    assert data(lines) == b"a brand new file\nsecond\n"
    good = Tailer([str(tmp_path)], clock=clock)
    good.poll()
    pos = good.position(good.files[(st.st_dev, st.st_ino)], 17)
    assert data(tailer([tmp_path], clock, checkpoints={pos.key: pos}).poll()) == b"second\n"


def test_gz_resumes_at_its_uncompressed_offset(tmp_path, clock):
    with gzip.open(tmp_path / "a.log.1.gz", "wb") as fh:
        fh.write(b"one\ntwo\nthree\n")
    t = tailer([tmp_path], clock, from_start=True)
    first = t.poll()
    pos = t.position(first[0].file, first[1].offset)     # "two" and "three" unacknowledged
    lines = tailer([tmp_path], clock, checkpoints={pos.key: pos}).poll()
    assert [(ln.offset, ln.data) for ln in lines] == [(4, b"two\n"), (8, b"three\n")]


def test_once_mode_drains_and_emits_old_partial_lines(tmp_path, clock):
    (tmp_path / "a.log").write_bytes(b"1\n2 no newline")
    (tmp_path / "b.log").write_bytes(b"x\nfresh partial")
    os.utime(tmp_path / "a.log", (1, 1))
    t = Tailer([str(tmp_path)], once=True, partial_idle=5.0)
    lines = []
    while not t.drained:
        lines.extend(t.poll())
    assert sorted(ln.data for ln in lines) == [b"1\n", b"2 no newline", b"x\n"]
    b = [p for p in t.positions() if p.path.endswith("b.log")][0]
    assert b.offset == 2 and not b.complete        # the fresh partial line waits for the next run


def test_checkpoint_file_is_atomic_locked_and_validated(tmp_path):
    d = tmp_path / "cp"
    a = Checkpoints(str(d))
    a.lock()
    with pytest.raises(CheckpointError, match="in use"):
        Checkpoints(str(d)).lock()
    a.update([Position("/x.log", 1, 2, 3, "f", 1, False, 100.0)])
    a.save(now=100.0)
    assert set(os.listdir(d)) == {"checkpoints.json", "lock"}   # no temporary file left behind
    a.save(now=100.0 + 8 * 86400)                  # not being read and a week old: dropped
    assert Checkpoints(str(d)).load() == {}
    a.close()
    Checkpoints(str(d)).lock()                     # released
    (d / "checkpoints.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        Checkpoints(str(d)).load()


def test_check_paths_and_archive_names(tmp_path):
    (tmp_path / "empty").mkdir()
    check_paths([str(tmp_path / "empty")])        # files may come later
    with pytest.raises(PathError) as err:
        check_paths([str(tmp_path / "missing.log"), str(tmp_path / "*.nothing")])
    assert "missing.log: no such file" in str(err.value) and "glob matched nothing" in str(err.value)
    assert is_archive("x.log.1") and is_archive("x.log.2.gz") and is_archive("messages-20240101")
    assert is_archive("x.log-20240101") and not is_archive("x.log") and not is_archive("screen-n-cpu.txt")


def test_an_unchanged_position_is_not_written_again(tmp_path, clock):
    log = tmp_path / "a.log"
    log.write_bytes(b"1\n")
    cps = Checkpoints(str(tmp_path / "cp"))
    t = tailer([log], clock, from_start=True)
    t.poll()
    cps.update(t.positions())
    assert cps.save()
    t.poll()
    cps.update(t.positions())          # same places, later times
    assert not cps.save()
    append(log, "2\n")
    t.poll()
    cps.update(t.positions())
    assert cps.save()


def test_a_copy_of_a_file_being_read_is_a_new_file(tmp_path, clock):
    log = tmp_path / "a.log"
    body = b"".join(b"2017-06-06 10:00:00.%03d 7 INFO a record number %d\n" % (i, i) for i in range(10))
    log.write_bytes(body)
    t = tailer([tmp_path], clock, from_start=True)
    assert data(t.poll()) == body
    shutil.copyfile(log, tmp_path / "backup.log")
    lines = t.poll()
    assert data(lines) == body and {ln.file.label for ln in lines} == {str(tmp_path / "backup.log")}


def test_start_fixes_the_live_position_before_reading(tmp_path, clock):
    log = tmp_path / "a.log"
    log.write_bytes(b"before\n")
    t = tailer([log], clock)
    t.start()                           # e.g. while the shipper waits for Kafka
    append(log, "during\n")
    assert data(t.poll()) == b"during\n"


def test_copytruncate_while_stopped_reads_the_copy_from_the_checkpoint(tmp_path, clock):
    log = tmp_path / "a.log"
    body = b"".join(b"2017-06-06 10:00:00.%03d 7 INFO a record number %d\n" % (i, i) for i in range(10))
    log.write_bytes(body)
    cps = Checkpoints(str(tmp_path / "cp"))
    t = tailer([tmp_path], clock, from_start=True)
    assert data(t.poll()) == body
    cps.update(t.positions())
    cps.save()
    t.close()
    append(log, "late\n")                          # written after the last checkpoint
    shutil.copyfile(log, tmp_path / "a.log.1")
    os.truncate(log, 0)
    append(log, "new\n")
    lines = drain(tailer([tmp_path], clock, checkpoints=cps.load(), from_start=True,
                         exclude=[tmp_path / "cp"]))   # (the checkpoint file is *.json: never read it)
    assert data(lines) == b"late\nnew\n"            # the copy's tail, then the new content
    assert [ln.offset for ln in lines] == [len(body), 0]
    assert {ln.file.label for ln in lines} == {str(log)}
