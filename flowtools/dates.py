"""SiLK's --start-date/--end-date: parsing dates and turning them into archive hours (UTC)."""

import calendar
import re
import time

from .errors import FlowError

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS

# How much of a date was written: year/month/day, hour, minute, second, fraction.
_DAY, _HOUR, _MINUTE, _SECOND, _FRACSEC = 3, 4, 5, 6, 7
_MIN_YEAR, _MAX_YEAR = 1970, 2039
_MIN_EPOCH, _MAX_EPOCH = 1 << 29, (1 << 31) - 1
# Separator expected before each part; the hour may also follow a 'T'.
_SEPARATORS = ("", "/", "/", ":", ":", ":", ".")
_EPOCH = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
_LIMITS = ((_MIN_YEAR, _MAX_YEAR, "year"), (1, 12, "month"), (1, 31, "day"),
           (0, 23, "hour"), (0, 59, "minute"), (0, 59, "second"))


def parse_date(text):
    """Parse a SiLK date: ``YYYY/MM/DD[:HH[:MM[:SS[.sss]]]]`` (``T`` may replace the ``:``
    before the hour) or epoch seconds (9 or more digits, optional fraction).

    Returns (epoch_ms, precision): precision is "day", "hour" (any finer time is accepted,
    and only its hour is used for file selection) or "epoch". epoch_ms is the exact time
    written, in UTC.
    """
    ms, level, epoch = _parse(text)
    if epoch:
        return ms, "epoch"
    return ms, "day" if level == _DAY else "hour"


def hours_for(start=None, end=None, now_ms=None):
    """The archive hours (epoch ms of each hour start) that SiLK's rwfilter reads for
    --start-date=`start` --end-date=`end` (strings or None)."""
    if start is None:
        if end is not None:
            raise FlowError("an end date needs a start date")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        # SiLK reads today's files from midnight up to the current hour.
        return _hour_range(now - now % DAY_MS, now - now % HOUR_MS)

    start_ms, start_level, start_epoch = _parse(start)
    first = start_ms - start_ms % HOUR_MS
    if end is None:
        if start_epoch or start_level >= _HOUR:
            last = first
        else:
            last = first - first % DAY_MS + DAY_MS - HOUR_MS
    else:
        end_ms, end_level, end_epoch = _parse(end)
        last = end_ms - end_ms % HOUR_MS
        if end_epoch:
            pass
        elif start_level == _DAY:
            # No start hour: whole days, whatever the end says.
            last = last - last % DAY_MS + DAY_MS - HOUR_MS
        elif end_level < _HOUR:
            # The start has an hour and the end has none: use the start's hour.
            last = last - last % DAY_MS + first % DAY_MS
    if last < first:
        raise FlowError(f"end date {format_hour(last)} is before start date {format_hour(first)}")
    return _hour_range(first, last)


def format_hour(hour_ms):
    """``YYYY/MM/DDTHH:00:00Z`` for an hour (as in packed-file-info)."""
    return time.strftime("%Y/%m/%dT%H:00:00Z", time.gmtime(hour_ms // 1000))


def _hour_range(first, last):
    return list(range(first, last + 1, HOUR_MS))


def _parse(text):
    """(epoch_ms, level, is_epoch); an epoch time's level follows SiLK: day when it is
    a whole number of days, hour when a whole hour, else finer."""
    s = text.strip() if isinstance(text, str) else ""
    if not s:
        raise FlowError(f"invalid date '{text}': empty")
    if len(s) - len(s.lstrip(".0123456789")) > 8:
        return _parse_epoch(text, s)
    values, i, n = [], 0, len(s)
    msec = 0
    while i < n and len(values) <= _SECOND:
        if values:
            sep = _SEPARATORS[len(values)]
            if s[i] == sep or (len(values) == _DAY and s[i] == "T"):
                i += 1
            else:
                raise FlowError(f"invalid date '{text}': unexpected {s[i]!r}")
            if i == n:
                break
        j = i
        while j < n and s[j] in "0123456789":
            j += 1
        if j == i:
            raise FlowError(f"invalid date '{text}': unexpected {s[i]!r}")
        if len(values) == _SECOND:
            msec = int(s[i:j][:3].ljust(3, "0"))  # finer than ms is dropped
            values.append(msec)
        else:
            values.append(_check(text, len(values), int(s[i:j]), values))
        i = j
    if i < n:
        raise FlowError(f"invalid date '{text}': unexpected {s[i]!r}")
    if len(values) < _DAY:
        raise FlowError(f"invalid date '{text}': it needs at least a year, month and day")
    parts = (values[:_SECOND] + [0, 0, 0])[:6]
    return calendar.timegm(tuple(parts)) * 1000 + msec, len(values), False


def _check(text, index, value, previous):
    low, high, what = _LIMITS[index]
    if index == 2:
        high = calendar.monthrange(previous[0], previous[1])[1]
    if not low <= value <= high:
        raise FlowError(f"invalid date '{text}': {what} {value} is not in {low}..{high}")
    return value


def _parse_epoch(text, s):
    match = _EPOCH.fullmatch(s)
    if not match:
        raise FlowError(f"invalid date '{text}': not epoch seconds")
    seconds, fraction = int(match.group(1)), match.group(2)
    if not _MIN_EPOCH <= seconds <= _MAX_EPOCH:
        raise FlowError(f"invalid date '{text}': epoch seconds must be in "
                        f"{_MIN_EPOCH}..{_MAX_EPOCH}")
    msec = int(fraction[:3].ljust(3, "0")) if fraction else 0
    if fraction is not None:
        level = _FRACSEC
    elif seconds % 86400 == 0:
        level = _DAY
    elif seconds % 3600 == 0:
        level = _HOUR
    elif seconds % 60 == 0:
        level = _MINUTE
    else:
        level = _SECOND
    return seconds * 1000 + msec, level, True


def format_ms(ms):
    """SiLK's default timestamp layout, ``2009/02/12T00:00:01.000`` (UTC)."""
    ms = int(ms)
    return time.strftime("%Y/%m/%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}"


_CEILING_MS = {_DAY: DAY_MS, _HOUR: HOUR_MS, _MINUTE: 60_000, _SECOND: 1000}


def parse_window(text, option="--stime"):
    """rwfilter's TIME_WINDOW ``START[-END]`` as inclusive epoch ms (lo, hi).

    As SiLK: a lone START is that instant; an END coarser than milliseconds is rounded
    up to the last millisecond of its day, hour, minute or second (epoch seconds count as
    second precision)."""
    s = text.strip() if isinstance(text, str) else ""
    start, dash, end = s.partition("-")
    try:
        lo, _, _ = _parse(start)
        if not dash:
            return lo, lo
        if not end:
            raise FlowError("missing end time")
        hi, level, epoch = _parse(end)
    except FlowError as exc:
        raise FlowError(f"invalid {option} '{text}': {exc}") from None
    if epoch and level < _FRACSEC:
        level = _SECOND
    if level in _CEILING_MS:
        step = _CEILING_MS[level]
        hi = hi - hi % step + step - 1
    if hi < lo:
        raise FlowError(f"invalid {option} '{text}': end is before start")
    return lo, hi
