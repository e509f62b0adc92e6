import pytest

from cronsup.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), ("250ms", 0.25),
    ("1.5h", 5400), ("90", 90), (90, 90), (2.5, 2.5), ("1H", 3600), ("1d2h3m4s", 93784),
])
def test_durations_read_as_people_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1 hour", "h", "1x", "-5s", "1s1s", True, -3])
def test_bad_durations_are_rejected_with_an_example(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text, size", [
    ("64KiB", 65536), ("1MiB", 1048576), ("1GB", 10**9), ("512", 512), ("10 kB", 10000),
    (4096, 4096), ("1gib", 2**30), ("2B", 2),
])
def test_sizes_read_as_people_write_them(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "1XB", "", "-1", True])
def test_bad_sizes_are_rejected(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_durations_are_shown_short():
    assert [format_duration(s) for s in (0.42, 12, 185, 7800, 270000)] == [
        "0.4s", "12s", "3m05s", "2h10m", "3d3h"]


def test_coarse_durations_drop_seconds_after_the_first_minute_and_never_show_zero():
    assert [format_duration(s, coarse=True) for s in (0.2, 4.4, 185, 3900, 270000)] == [
        "1s", "4s", "3m", "1h05m", "3d3h"]


def test_signal_numbers_are_shown_by_name_and_unknown_ones_by_number():
    from cronsup.units import signal_name

    assert (signal_name(15), signal_name(9), signal_name(99)) == ("SIGTERM", "SIGKILL", "signal 99")
