from dataclasses import FrozenInstanceError
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from kubelab.core.cron import CronError, CronSchedule, next_runs, parse, validate_timezone

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def in_utc(runs):
    """Runs as UTC instants (datetimes in the same zone compare by wall time in Python)."""
    return [r.astimezone(timezone.utc) for r in runs]


def wall(runs):
    """Runs as naive local wall times, the way a user reads them."""
    return [r.replace(tzinfo=None) for r in runs]


# --- valid schedules -------------------------------------------------------------------------

def test_parse_expands_each_field():
    s = parse("*/20 1-3 ? JAN,jul 1-5")
    assert isinstance(s, CronSchedule)
    assert s.minutes == {0, 20, 40}
    assert s.hours == {1, 2, 3}
    assert s.days_of_month == set(range(1, 32)) and s.dom_star
    assert s.months == {1, 7}
    assert s.days_of_week == {1, 2, 3, 4, 5} and not s.dow_star


@pytest.mark.parametrize("expr, minutes", [
    ("*/5 * * * *", set(range(0, 60, 5))),
    ("0-10/5 * * * *", {0, 5, 10}),
    ("50/5 * * * *", {50, 55}),            # a/n means a-59/n
    ("1,2,30-31 * * * *", {1, 2, 30, 31}),
    ("7 * * * *", {7}),
    ("*/61 * * * *", {0}),                  # accepted by Kubernetes: only minute 0
])
def test_minute_forms(expr, minutes):
    assert parse(expr).minutes == minutes


def test_names_are_case_insensitive():
    s = parse("0 0 * jan-MAR,Dec sun,Sat")
    assert s.months == {1, 2, 3, 12}
    assert s.days_of_week == {0, 6}
    assert parse("0 0 * * MON-FRI").days_of_week == {1, 2, 3, 4, 5}


def test_question_mark_means_star():
    assert parse("0 0 ? * ?") == parse("0 0 * * *")
    # robfig accepts '?' in any field, so Kubernetes does too
    assert parse("? 0 * * *").minutes == set(range(60))


@pytest.mark.parametrize("descriptor, same_as", [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
])
def test_descriptors(descriptor, same_as):
    assert parse(descriptor) == parse(same_as)
    after = utc(2024, 5, 1, 12, 0)
    assert next_runs(descriptor, n=3, after=after) == next_runs(same_as, n=3, after=after)


def test_schedule_is_immutable():
    with pytest.raises(FrozenInstanceError):
        parse("* * * * *").minutes = frozenset()


# --- invalid schedules -----------------------------------------------------------------------

@pytest.mark.parametrize("expr, message", [
    ("61 * * * *", "minute 61 is out of range 0-59"),
    ("* 24 * * *", "hour 24 is out of range 0-23"),
    ("* * 0 * *", "day of month 0 is out of range 1-31"),
    ("* * 32 * *", "day of month 32 is out of range 1-31"),
    ("* * * 13 *", "month 13 is out of range 1-12"),
    ("* * * * 7", "day of week 7 is out of range 0-6 (Sunday is 0)"),
    ("60/5 * * * *", "minute 60 is out of range 0-59"),
    ("* * * * MON-FOO", "day of week 'FOO' is not a number or name"),
    ("* * * FOO *", "month 'FOO' is not a number or name"),
    ("MON * * * *", "minute 'MON' is not a number"),
    ("* * * * MONDAY", "day of week 'MONDAY' is not a number or name"),
    ("1.5 * * * *", "minute '1.5' is not a number"),
    ("5-1 * * * *", "minute range '5-1' starts after it ends"),
    ("* * * * FRI-MON", "day of week range 'FRI-MON' starts after it ends"),
    ("*/0 * * * *", "minute step in '*/0' must be at least 1"),
    ("* */-2 * * *", "hour step in '*/-2' must be at least 1"),
    ("*/x * * * *", "minute step 'x' in '*/x' is not a number"),
    ("1-2-3 * * * *", "minute '1-2-3' has more than one '-'"),
    ("*/2/3 * * * *", "minute '*/2/3' has more than one '/'"),
    ("-5 * * * *", "minute '-5' is missing a number"),
    ("1- * * * *", "minute '1-' is missing a number"),
])
def test_invalid_field_messages(expr, message):
    with pytest.raises(CronError) as err:
        parse(expr)
    assert str(err.value) == f"invalid cron expression '{expr}': {message}"


@pytest.mark.parametrize("expr, message", [
    ("", "the schedule is empty"),
    ("   ", "the schedule is empty"),
    ("0 0 * * * *", "found 6 fields; Kubernetes schedules have 5: minute hour day-of-month month day-of-week "
                    "(there is no seconds field)"),
    ("0 0 * *", "found 4 fields; Kubernetes schedules have 5"),
    ("0 0 * * * * 2024", "found 7 fields"),
    ("@every 1h", "@every is not supported; use a 5-field schedule"),
    ("@every", "@every is not supported; use a 5-field schedule"),
    ("@reboot", "@reboot is not supported; use a 5-field schedule"),
    ("@fortnightly", "unknown descriptor '@fortnightly'"),
    ("@DAILY", "descriptors are lower-case: use '@daily'"),
    ("@daily ", "remove the spaces around '@daily'"),
    ("TZ=Europe/Berlin 0 9 * * *", "use the time zone field instead of TZ= in the schedule"),
    ("CRON_TZ=UTC 0 9 * * *", "use the time zone field instead of TZ= in the schedule"),
])
def test_invalid_schedule_messages(expr, message):
    with pytest.raises(CronError) as err:
        parse(expr)
    text = str(err.value)
    assert text.startswith(f"invalid cron expression '{expr}': ")
    assert message in text


def test_errors_are_one_line_value_errors():
    for expr in ["61 * * * *", "0 0 * * * *", "@every 5m", "* * * * MON-FOO", "*/0 * * * *", "\n",
                 "0 0 * *\n* *\n0"]:
        with pytest.raises(ValueError) as err:
            parse(expr)
        assert isinstance(err.value, CronError)
        assert "\n" not in str(err.value)
    assert str(pytest.raises(CronError, parse, "0\t0 * *").value) == (
        "invalid cron expression '0\\t0 * *': found 4 fields; Kubernetes schedules have 5: "
        "minute hour day-of-month month day-of-week")


def test_next_runs_refuses_bad_schedule_before_computing():
    with pytest.raises(CronError, match="minute 61 is out of range"):
        next_runs("61 * * * *", after=utc(2024, 1, 1))


# --- next runs -------------------------------------------------------------------------------

def test_every_15_minutes():
    runs = next_runs("*/15 * * * *", after=utc(2024, 5, 1, 10, 7))
    assert runs == [utc(2024, 5, 1, 10, 15), utc(2024, 5, 1, 10, 30), utc(2024, 5, 1, 10, 45),
                    utc(2024, 5, 1, 11, 0), utc(2024, 5, 1, 11, 15)]
    assert all(r.tzinfo == UTC for r in runs)


def test_runs_are_strictly_after():
    assert next_runs("0 * * * *", n=1, after=utc(2024, 5, 1, 10, 0)) == [utc(2024, 5, 1, 11, 0)]
    assert next_runs("0 * * * *", n=1, after=utc(2024, 5, 1, 9, 59, 59, 500000)) == [utc(2024, 5, 1, 10, 0)]


def test_weekdays_at_nine():
    # 2024-05-03 is a Friday: the weekend is skipped
    runs = next_runs("0 9 * * MON-FRI", after=utc(2024, 5, 3, 10, 0))
    assert wall(runs) == [datetime(2024, 5, d, 9, 0) for d in (6, 7, 8, 9, 10)]


def test_month_names_and_ranges():
    runs = next_runs("30 6 15 JAN,jul *", n=3, after=utc(2024, 1, 20))
    assert wall(runs) == [datetime(2024, 7, 15, 6, 30), datetime(2025, 1, 15, 6, 30), datetime(2025, 7, 15, 6, 30)]


def test_day_of_month_or_day_of_week():
    # both restricted: fires on the 1st AND on every Monday (2024-04-29 and 2024-05-06 are Mondays)
    runs = next_runs("0 0 1 * MON", after=utc(2024, 4, 25, 12, 0))
    assert wall(runs) == [datetime(2024, 4, 29), datetime(2024, 5, 1), datetime(2024, 5, 6),
                          datetime(2024, 5, 13), datetime(2024, 5, 20)]


def test_star_day_field_lets_the_other_decide():
    after = utc(2024, 5, 1, 12, 0)
    mondays = [datetime(2024, 5, 6), datetime(2024, 5, 13), datetime(2024, 5, 20)]
    assert wall(next_runs("0 0 * * MON", n=3, after=after)) == mondays
    assert wall(next_runs("0 0 ? * MON", n=3, after=after)) == mondays
    assert wall(next_runs("0 0 1 * *", n=2, after=after)) == [datetime(2024, 6, 1), datetime(2024, 7, 1)]


def test_star_with_step_is_a_restriction():
    after = utc(2024, 5, 1, 12, 0)
    # '*/2' is not a star: odd days OR Mondays (May 6 is an even Monday)
    assert wall(next_runs("0 0 */2 * MON", after=after)) == [
        datetime(2024, 5, 3), datetime(2024, 5, 5), datetime(2024, 5, 6), datetime(2024, 5, 7), datetime(2024, 5, 9)]
    # '*/1' still is a star: Mondays only
    assert wall(next_runs("0 0 */1 * MON", n=2, after=after)) == [datetime(2024, 5, 6), datetime(2024, 5, 13)]
    # '1-31' is a restriction: every day
    assert wall(next_runs("0 0 1-31 * MON", n=2, after=after)) == [datetime(2024, 5, 2), datetime(2024, 5, 3)]


def test_leap_day():
    runs = next_runs("0 12 29 2 *", n=2, after=utc(2024, 3, 1))
    assert wall(runs) == [datetime(2028, 2, 29, 12), datetime(2032, 2, 29, 12)]


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 ?"])
def test_never_fires(expr):
    with pytest.raises(CronError, match="schedule never fires"):
        next_runs(expr, after=utc(2024, 1, 1))


def test_count_and_default_after():
    assert next_runs("* * * * *", n=0, after=utc(2024, 1, 1)) == []
    before = datetime.now(timezone.utc)
    runs = next_runs("* * * * *", n=2)
    assert before < runs[0] <= before + timedelta(minutes=1)
    assert runs[1] - runs[0] == timedelta(minutes=1)


# --- time zones ------------------------------------------------------------------------------

def test_berlin_schedule_in_summer_and_winter():
    summer = next_runs("0 9 * * *", tz="Europe/Berlin", n=2, after=utc(2024, 7, 1))
    assert all(r.tzinfo == BERLIN for r in summer)
    assert wall(summer) == [datetime(2024, 7, 1, 9), datetime(2024, 7, 2, 9)]
    assert summer[0] == utc(2024, 7, 1, 7)        # CEST = UTC+2
    winter = next_runs("0 9 * * *", tz="Europe/Berlin", n=1, after=utc(2024, 1, 15))
    assert winter[0] == utc(2024, 1, 15, 8)        # CET = UTC+1


def test_after_is_converted_or_read_as_local():
    # 08:30 UTC is 10:30 in Berlin in summer, so 10:00 Berlin has passed
    aware = next_runs("0 10 * * *", tz="Europe/Berlin", n=1, after=utc(2024, 7, 1, 8, 30))
    assert wall(aware) == [datetime(2024, 7, 2, 10)]
    # a naive `after` is wall time in tz: 08:30 Berlin, so 10:00 today is next
    naive = next_runs("0 10 * * *", tz="Europe/Berlin", n=1, after=datetime(2024, 7, 1, 8, 30))
    assert wall(naive) == [datetime(2024, 7, 1, 10)]


def test_spring_forward_skips_the_missing_time():
    # 2024-03-10 02:00 EST jumps to 03:00 EDT: 02:30 does not exist that day
    runs = next_runs("30 2 * * *", tz="America/New_York", n=3, after=datetime(2024, 3, 9, 12, 0))
    assert wall(runs) == [datetime(2024, 3, 11, 2, 30), datetime(2024, 3, 12, 2, 30), datetime(2024, 3, 13, 2, 30)]
    assert in_utc(runs)[0] == utc(2024, 3, 11, 6, 30)
    # same in Berlin (2024-03-31 02:00 CET -> 03:00 CEST)
    berlin = next_runs("30 2 * * *", tz="Europe/Berlin", n=2, after=datetime(2024, 3, 30, 12, 0))
    assert wall(berlin) == [datetime(2024, 4, 1, 2, 30), datetime(2024, 4, 2, 2, 30)]


def test_spring_forward_hourly_loses_an_hour():
    runs = next_runs("0 * * * *", tz="America/New_York", n=3, after=datetime(2024, 3, 10, 0, 30))
    assert wall(runs) == [datetime(2024, 3, 10, 1), datetime(2024, 3, 10, 3), datetime(2024, 3, 10, 4)]
    assert in_utc(runs) == [utc(2024, 3, 10, 6), utc(2024, 3, 10, 7), utc(2024, 3, 10, 8)]


def test_fall_back_repeated_time_fires_in_both_offsets():
    # robfig (and so the CronJob controller) fires 01:30 EDT and again 01:30 EST on 2024-11-03
    runs = next_runs("30 1 * * *", tz="America/New_York", n=3, after=datetime(2024, 11, 2, 12, 0))
    assert in_utc(runs) == [utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30), utc(2024, 11, 4, 6, 30)]
    assert wall(runs)[:2] == [datetime(2024, 11, 3, 1, 30)] * 2


def test_next_after_uses_the_zone_of_its_argument():
    s = parse("0 9 * * *")
    assert s.next_after(datetime(2024, 7, 1, tzinfo=BERLIN)) == datetime(2024, 7, 1, 9, tzinfo=BERLIN)
    assert s.next_after(utc(2024, 7, 1)) == utc(2024, 7, 1, 9)
    with pytest.raises(ValueError, match="timezone-aware"):
        s.next_after(datetime(2024, 7, 1))


@pytest.mark.parametrize("tz", ["UTC", "Etc/UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"])
def test_valid_time_zones(tz):
    assert validate_timezone(tz) == tz
    assert next_runs("0 0 * * *", tz=tz, n=1, after=utc(2024, 1, 1))[0].tzinfo == ZoneInfo(tz)


@pytest.mark.parametrize("tz, message", [
    ("Mars/Base", "unknown time zone 'Mars/Base'"),
    ("Europe/Pariss", "unknown time zone 'Europe/Pariss'"),
    ("../etc/passwd", "unknown time zone '../etc/passwd'"),
    ("Europe/Berlin/", "unknown time zone 'Europe/Berlin/'"),
    ("Europe", "unknown time zone 'Europe'"),
    ("", "time zone must not be empty"),
    ("Local", "time zone 'Local' is not allowed"),
    ("local", "time zone 'local' is not allowed"),
])
def test_invalid_time_zones(tz, message):
    with pytest.raises(CronError) as err:
        validate_timezone(tz)
    assert message in str(err.value)
    with pytest.raises(CronError):
        next_runs("0 0 * * *", tz=tz, after=utc(2024, 1, 1))


def test_skipped_calendar_day_gives_an_error_not_a_hang():
    # Samoa skipped 2011-12-30; robfig (and so the CronJob controller) loops forever here
    with pytest.raises(CronError, match="skips a day"):
        next_runs("0 0 * * MON", tz="Pacific/Apia", after=datetime(2011, 12, 29, 12, 0))
    # a schedule that matches every day steps over the gap, as robfig does
    runs = next_runs("0 1 * * *", tz="Pacific/Apia", n=2, after=datetime(2011, 12, 29, 12, 0))
    assert wall(runs) == [datetime(2011, 12, 31, 1), datetime(2012, 1, 1, 1)]
