"""Timestamps: oslo.log writes local time without a zone.

The source's timezone is a setting (default UTC). Conversion is cached per
second of text, because thousands of records share the same second; the ISO
text keeps the source's wall-clock digits and appends the zone offset.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


_POW10 = tuple(10 ** n for n in range(10))


class InvalidTimestamp(ValueError):
    """A timestamp that has the right shape but names no real instant."""


class _Braces(Exception):
    """A second text with ``{`` or ``}`` (see ``TimeParser._parse_template``)."""


def tz_of(name: str | None) -> tzinfo:
    if not name or name.upper() in ("UTC", "Z"):
        return timezone.utc
    if name[0] in "+-" and len(name) in (5, 6):
        sign = -1 if name[0] == "-" else 1
        hh, mm = int(name[1:3]), int(name[-2:])
        return timezone(sign * timedelta(hours=hh, minutes=mm))
    return ZoneInfo(name)


def offset_text(off: timedelta | None) -> str:
    """``+HH:MM`` of a UTC offset, as the ISO texts end."""
    if not off:
        return "+00:00"
    total = int(off.total_seconds())
    sign = "-" if total < 0 else "+"
    total = abs(total)
    return f"{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


class TimeParser:
    """Converts ``YYYY-MM-DD HH:MM:SS[.fff]`` local text into (epoch, ISO)."""

    def __init__(self, tz: str | tzinfo | None = None) -> None:
        self.tz = tz if isinstance(tz, tzinfo) else tz_of(tz)
        # second text -> (epoch, ISO date+time, ISO zone offset)
        self._cache: dict[str, tuple[int, str, str]] = {}

    def _second(self, text: str) -> tuple[int, str, str]:
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        if "{" in text or "}" in text:
            raise _Braces
        try:
            dt = datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                          int(text[14:16]), int(text[17:19]), tzinfo=self.tz)
        except ValueError as exc:
            raise InvalidTimestamp(f"invalid timestamp {text!r}: {exc}") from None
        hit = (int(dt.timestamp()), f"{text[:10]}T{text[11:19]}", offset_text(dt.utcoffset()))
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[text] = hit
        return hit

    def parse(self, text: str) -> tuple[float, str]:
        """``(epoch seconds, ISO 8601 with zone)`` for oslo.log's asctime+msecs."""
        sec = text[:19]
        try:
            epoch, iso, zone = self._cache.get(sec) or self._second(sec)
        except _Braces:
            return self._parse_template(text)
        frac = text[20:]
        if frac and frac.isdigit():
            n = len(frac)
            return epoch + int(frac) / (_POW10[n] if n < 10 else 10 ** n), f"{iso}.{frac}{zone}"
        return float(epoch), iso + zone

    def _parse_template(self, text: str) -> tuple[float, str]:
        """``parse`` as first written (a str.format template), kept for
        second texts with braces, which only odd JSON ``asctime`` values have
        and which the template treats in its own way."""
        text19 = text[:19]
        try:
            dt = datetime(int(text19[0:4]), int(text19[5:7]), int(text19[8:10]), int(text19[11:13]),
                          int(text19[14:16]), int(text19[17:19]), tzinfo=self.tz)
        except ValueError as exc:
            raise InvalidTimestamp(f"invalid timestamp {text19!r}: {exc}") from None
        epoch = int(dt.timestamp())
        iso = f"{text19[:10]}T{text19[11:19]}{{}}{offset_text(dt.utcoffset())}"
        frac = text[20:]
        if frac and frac.isdigit():
            return epoch + int(frac) / 10 ** len(frac), iso.format("." + frac)
        return float(epoch), iso.format("")

    def parse_syslog(self, text: str, year: int) -> tuple[float, str]:
        """``Mon DD HH:MM:SS[.ffffff]`` (syslog / journald short-precise)."""
        month = MONTHS.get(text[:3])
        if month is None:
            raise InvalidTimestamp(f"invalid syslog timestamp {text!r}")
        day = text[4:6].strip()
        rest = text[7:]
        return self.parse(f"{year:04d}-{month:02d}-{int(day):02d} {rest[:8]}{rest[8:].replace(',', '.')}")

    @staticmethod
    def parse_iso(text: str) -> tuple[float, str]:
        """An ISO 8601 instant with zone (JSON envelopes, RFC 5424 syslog)."""
        t = text.strip()
        if t.endswith("Z"):
            t = t[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(t)
        except ValueError as exc:
            raise InvalidTimestamp(f"invalid timestamp {text!r}: {exc}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp(), dt.isoformat(timespec="milliseconds")

    def from_epoch(self, epoch: float) -> tuple[float, str]:
        try:
            dt = datetime.fromtimestamp(epoch, self.tz)
        except (ValueError, OverflowError, OSError) as exc:
            raise InvalidTimestamp(f"invalid epoch {epoch!r}: {exc}") from None
        return epoch, dt.isoformat(timespec="milliseconds")

    def parse_apache(self, text: str) -> tuple[float, str]:
        """``29/Oct/2015:10:51:09 +0000`` (Apache/eventlet access logs)."""
        try:
            dt = datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z")
        except ValueError as exc:
            raise InvalidTimestamp(f"invalid access-log timestamp {text!r}: {exc}") from None
        return dt.timestamp(), dt.isoformat(timespec="milliseconds")


def iso_to_epoch(text: str) -> float:
    """Parse a user-supplied time (``--since``): ISO 8601, date, or
    ``YYYY-MM-DD HH:MM[:SS]``; no zone means UTC."""
    t = text.strip().replace(" ", "T", 1)
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()
