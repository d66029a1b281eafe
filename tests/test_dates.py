import pytest

from flowtools.dates import format_hour, hours_for, parse_date
from flowtools.errors import FlowError

DAY12 = 1234396800  # 2009-02-12 00:00:00 UTC, epoch seconds


def h(day, hour):
    """Epoch ms of 2009-02-<day> <hour>:00 UTC."""
    return (DAY12 + (day - 12) * 86400 + hour * 3600) * 1000


def span(first, last):
    return list(range(first, last + 1, 3600_000))


# --- parse_date ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("2009/02/12", (h(12, 0), "day")),
    ("2009/2/12", (h(12, 0), "day")),
    (" 2009/02/12 ", (h(12, 0), "day")),
    ("2009/02/12:", (h(12, 0), "day")),
    ("2009/02/12:05", (h(12, 5), "hour")),
    ("2009/02/12T05", (h(12, 5), "hour")),
    ("2009/02/12:05:30", (h(12, 5) + 30 * 60_000, "hour")),
    ("2009/02/12T05:30:10", (h(12, 5) + 30 * 60_000 + 10_000, "hour")),
    ("2009/02/12:05:30:10.25", (h(12, 5) + 30 * 60_000 + 10_250, "hour")),
    ("2009/02/12:05:30:10.123456", (h(12, 5) + 30 * 60_000 + 10_123, "hour")),
    ("2008/02/29", (1204243200_000, "day")),
    ("1234396801", (1234396801_000, "epoch")),
    ("1234396801.5", (1234396801_500, "epoch")),
    ("1234396801.2509", (1234396801_250, "epoch")),
])
def test_parse_date(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", [
    "", "   ", "abc", "2009", "2009/02", "2009/13/01", "2009/00/01", "2009/02/29", "2009/02/30",
    "2009/02/00", "2009-02-12", "2009/02/12:24", "2009/02/12:05:60", "2009/02/12:05:30:60",
    "2009/02/12 05", "2009/02/12x", "2009/02/12:05:30:10.250x", "2009/02/12::05", "1969/12/31",
    "2040/01/01", "20090212", "123456789", "3000000000", "1234396801.", "1234396801.5.1",
    "1234396801x", ".1234396801", "2009//02/12", "2009/02/12T05T06",
])
def test_parse_date_rejects(text):
    with pytest.raises(FlowError) as info:
        parse_date(text)
    assert f"'{text}'" in str(info.value)


# --- hours_for: every rule of SiLK's --start-date/--end-date --------------------------------

def test_both_to_the_hour():
    assert hours_for("2009/02/12:03", "2009/02/12:05") == [h(12, 3), h(12, 4), h(12, 5)]
    assert hours_for("2009/02/12T22", "2009/02/13T01") == \
        [h(12, 22), h(12, 23), h(13, 0), h(13, 1)]
    assert hours_for("2009/02/12:03", "2009/02/12:03") == [h(12, 3)]


def test_finer_than_hour_is_truncated():
    assert hours_for("2009/02/12:03:59:59.999", "2009/02/12:04:00:01") == [h(12, 3), h(12, 4)]
    assert hours_for("2009/02/12:05:30") == [h(12, 5)]


def test_start_day_means_whole_days():
    assert hours_for("2009/02/12", "2009/02/13") == span(h(12, 0), h(13, 23))
    # the end's hour is ignored
    assert hours_for("2009/02/12", "2009/02/13:05") == span(h(12, 0), h(13, 23))
    assert hours_for("2009/02/12", "2009/02/12:00") == span(h(12, 0), h(12, 23))


def test_start_hour_end_day_uses_start_hour():
    assert hours_for("2009/02/12:05", "2009/02/14") == span(h(12, 5), h(14, 5))
    assert len(hours_for("2009/02/12:05", "2009/02/14")) == 49
    assert hours_for("2009/02/12:05", "2009/02/12") == [h(12, 5)]


def test_only_start():
    assert hours_for("2009/02/12") == span(h(12, 0), h(12, 23))
    assert len(hours_for("2009/02/12")) == 24
    assert hours_for("2009/02/12:07") == [h(12, 7)]
    assert hours_for("2009/02/12T23") == [h(12, 23)]


def test_epoch_end_is_taken_as_is():
    # even after a day-precision start, an epoch end is an hour
    assert hours_for("2009/02/12", str(DAY12 + 3 * 3600)) == span(h(12, 0), h(12, 3))
    assert hours_for("2009/02/12:01", str(DAY12 + 3 * 3600 + 3599)) == span(h(12, 1), h(12, 3))
    assert hours_for(str(DAY12), str(DAY12 + 86400)) == span(h(12, 0), h(13, 0))


def test_epoch_start_with_ymd_end():
    # a start on a day boundary counts as day precision: whole days
    assert hours_for(str(DAY12), "2009/02/13") == span(h(12, 0), h(13, 23))
    assert hours_for(str(DAY12), "2009/02/12:05") == span(h(12, 0), h(12, 23))
    # otherwise it is an hour, and a day-only end takes the start's hour
    assert hours_for(str(DAY12 + 3600), "2009/02/13") == span(h(12, 1), h(13, 1))
    assert hours_for(str(DAY12 + 3600 + 61), "2009/02/13") == span(h(12, 1), h(13, 1))
    assert hours_for(str(DAY12 + 3600), "2009/02/12:04") == span(h(12, 1), h(12, 4))
    # a fraction is never day precision
    assert hours_for(f"{DAY12}.000", "2009/02/13") == span(h(12, 0), h(13, 0))


def test_epoch_start_alone_is_one_hour():
    assert hours_for(str(DAY12)) == [h(12, 0)]
    assert hours_for(str(DAY12 + 3600 + 61)) == [h(12, 1)]


def test_neither_means_today_up_to_now():
    assert hours_for(now_ms=h(12, 5) + 30 * 60_000) == span(h(12, 0), h(12, 5))
    assert hours_for(now_ms=h(12, 0)) == [h(12, 0)]
    assert hours_for(now_ms=h(12, 23) + 3599_999) == span(h(12, 0), h(12, 23))
    today = hours_for()
    assert 1 <= len(today) <= 24
    assert today[0] % 86400_000 == 0


def test_end_without_start():
    with pytest.raises(FlowError, match="start date"):
        hours_for(end="2009/02/12")


def test_end_before_start():
    with pytest.raises(FlowError, match="before"):
        hours_for("2009/02/12:05", "2009/02/12:04")
    with pytest.raises(FlowError, match="before"):
        hours_for("2009/02/13", "2009/02/12")
    with pytest.raises(FlowError, match="before"):
        hours_for("2009/02/12:05", str(DAY12))


def test_bad_dates_name_the_text():
    with pytest.raises(FlowError, match="'2009/02/31'"):
        hours_for("2009/02/31")
    with pytest.raises(FlowError, match="'tomorrow'"):
        hours_for("2009/02/12", "tomorrow")


def test_format_hour():
    assert format_hour(h(12, 0)) == "2009/02/12T00:00:00Z"
    assert format_hour(h(13, 7)) == "2009/02/13T07:00:00Z"
