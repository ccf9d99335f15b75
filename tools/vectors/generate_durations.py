#!/usr/bin/env python3
"""Generate the CONNECTOR_DURATION_PERIOD test vectors with pydantic itself.

pycti (`pycti/connector/opencti_connector_helper.py`, 7.261026.0) reads the setting with `get_config_variable`, so
from the environment it is always a string, and turns it into a period with

    if duration_period == "0":
        duration_period_in_seconds = 0
    else:
        timedelta_adapter = TypeAdapter(datetime.timedelta)
        td = timedelta_adapter.validate_python(duration_period)
        duration_period_in_seconds = int(td.total_seconds())

(`schedule_iso`; the helper's constructor runs the same code to decide whether the connector runs once, and a value
pydantic refuses makes that constructor raise). A period of 0 means "run once and terminate".

Each vector holds what pydantic's `TypeAdapter(timedelta).validate_python(text)` makes of one text:
  input         the text
  seconds       `timedelta.total_seconds()` (a float), or null when pydantic refuses the text
  microseconds  the exact total in microseconds (an integer, possibly beyond 64 bits), or null
  error         pydantic's error type (always `time_delta_parsing` for a refused string), or `OverflowError` for the
                negative durations pydantic parses but Python's timedelta cannot hold; null when accepted
  message       pydantic's error message (which speedate rule refused it), or null
  pycti_seconds the whole seconds pycti schedules with (the code above, after `get_config_variable`'s own rewrite of
                yes/true/True and no/false/False into booleans and of "" into "unset"), or null when pycti refuses
                the value (or, for "", leaves it unset)
The Rust test checks `parse_duration` against the first five and `pycti_period` against `pycti_seconds`.

Usage (from the repository root):
    python3 -m venv /tmp/durations && /tmp/durations/bin/pip install -r tools/vectors/durations-requirements.txt
    /tmp/durations/bin/python tools/vectors/generate_durations.py   # writes opencti-connector/tests/data/pydantic_duration_vectors.json
"""

import datetime
import json
import pathlib
import sys

from pydantic import TypeAdapter, ValidationError

ADAPTER = TypeAdapter(datetime.timedelta)

OUTPUT = pathlib.Path(__file__).resolve().parents[2] / "opencti-connector" / "tests" / "data" / "pydantic_duration_vectors.json"

# get_config_variable's rewrites (pycti's TRUTHY and FALSY lists): such a value reaches pydantic as a bool.
TRUTHY = ["yes", "true", "True"]
FALSY = ["no", "false", "False"]

NINES_400 = "9" * 400

INPUTS = [
    # ISO-8601, one designator each: Y = 365 days, M (before T) = 30 days, W = 7 days.
    "P1Y", "P1M", "P1W", "P1D", "PT1H", "PT1M", "PT1S", "P2W", "PT24H", "PT90M", "PT3600S",
    # ISO-8601 combinations (the pycti docstring's own example among them); W may be mixed with the others.
    "P1DT12H", "PT1H30M", "PT1H30M0S", "P3DT12H30M5S", "P1Y2M3DT4H5M6S", "P1Y2M3W4DT5H6M7S", "P18Y9W4DT11H9M8S",
    "P1W1D", "P1Y2M10DT2H30M",
    # Zero.
    "PT0S", "P0D", "P0Y", "PT0H", "PT0.0S", "P0DT0H0M0S",
    # Fractions, `.` or `,`, in any unit, only in the last number; computed in floating point then rounded to the
    # microsecond; digits after the separator are optional; 400 digits overflow the float and count as nothing.
    "PT1.5S", "PT0.5S", "PT0,5S", "P0.5D", "P1,5D", "P1.5Y", "P0.5Y", "P1.5M", "P1.123W", "PT1.5H", "PT1,5H",
    "PT0.25M", "PT0.1S", "PT0.7S", "P0.1D", "P0.333333333333D", "PT1.123456789S", "PT0.000001S", "PT0.0000005S",
    "PT0.00000049S", "PT0.0000015S", "PT0.9999999S", "PT0.99999999999999999999S", "PT1.S", "P1.DT",
    "P1DT1H1M1.5S", "PT0." + NINES_400 + "S", "P0." + NINES_400 + "D",
    "P0.5DT1H", "PT1.5H30M", "PT.5S", "PT1H.5S",
    # Designators in any order and repeated: they add up.
    "P1D1D", "PT1S1H", "P1M1Y", "P1W2W", "PT1H1H",
    # Only upper-case designators.
    "p1d", "pt1h", "P1d", "PT1h", "Pt1H", "P1y",
    # One leading sign.
    "-P1D", "+P1D", "-PT1H", "-PT0S", "-PT0.5S", "+-P1D", "--P1D", "-", "+",
    # The T separator: a trailing T is fine, a repeated or lone one is not; H/M/S only after T, Y/M/W/D only before.
    "P1DT", "PT", "P", "PTT1H", "P1T", "PT1", "P1", "P1Dx", "P1D T1H", "P T1H", "P1H", "PT1D", "PT1W", "PT1Y",
    # Limits: every number must fit 32 bits (and so must the seconds after T); at most 999,999,999 days.
    "P999999999D", "P1000000000D", "P2739726Y", "P2739727Y", "P11767556Y", "P142857142W", "P4294967295D",
    "P99999999999999999999D", "PT4294967295S", "PT4294967296S", "PT1193046H", "PT1193047H", "PT71582788M",
    "P999999999DT86399.999999S", "P999999999DT86399.9999999S", "-P999999999D", "-P999999999DT1S",
    # [-+][H...]:MM[:SS[.f]]: any number of hours (up to 2.4e9), two-digit minutes and seconds, at most 12 characters
    # after the first colon are read (the rest is ignored), up to 6 fraction digits count.
    "01:00:00", "1:00:00", "00:30", "00:30:00", ":30:00", "25:00:00", "24:00", "123:45", "1:00:00.5", "1:00:00,5",
    "01:00:00.123456", "01:00:00.1234567", "00:30:00.1234565", "1:00:00.123456abc", "1:00:00.1234567abc",
    "-01:00:00", "+01:00:00", "-0:00:00", "0:00:00", "00:00", "00:59:59", "2400000000:00:00", "2400000001:00:00",
    "12345678901:00:00", "00:60", "00:00:60", "1:5:00", "1:00", "1:00:00.", "1:00:00abc", "01:00:00Z",
    "1:00:00:00", "01.5:00", "R/PT1H",
    # N d|day|days [,][ ]HH:MM[:SS[.f]] ("1 day, 1:00:00" is how Python prints a timedelta): one optional space
    # before d, which is the only letter that may differ in case from the rest of "day".
    "1d", "1D", "1 d", "1day", "1 day", "1 days", "2 days", "2 day", "1 Day", "1 DAY", "1 DAYS", "1 dAys", "1  d",
    "0d", "+1d", "-1d", "1d,", "1 day,", "1 day, ", "1 day, 01:00:00", "1 day 01:00:00", "1day,01:00:00",
    "1d01:00:00", "1 day 01:00", "2 days, 0:00:00", "-1 day, 23:00:00", "1d 23:59:59.999999", "1d 24:00:00",
    "1 day  01:00:00", "1 day 1:00", "1 dayz", "1d1h", "1.5d", "1,5d", "999999999 days", "1000000000 days",
    "4294967296d",
    # Bare numbers: refused as strings (pydantic takes numbers as seconds only when they are ints or floats).
    "0", "00", "3600", "86400", "1.5", "-1", "1e3", " 3600",
    # Booleans as get_config_variable rewrites them (pydantic refuses the strings; pycti passes True/False on).
    "true", "True", "yes", "false", "False", "no", "TRUE",
    # Junk: no trimming, no other units or notations.
    "", " ", "1h", "1m", "30s", "1w", "1h30m", "1 hour", "abc", "none", "inf", "nan", "PT1H ", " PT1H", "PT1H\n",
    "\tPT1H", "PT1H 30M", "P1D/P2D", "P0001-00-00", "\uff11d",
]


def pydantic_result(value):
    """(timedelta, None, None) or (None, error type, message): what pycti's `validate_python` call gives."""
    try:
        return ADAPTER.validate_python(value), None, None
    except ValidationError as error:
        first = error.errors()[0]
        return None, first["type"], first["msg"]
    except OverflowError as error:
        # speedate parsed it, but timedelta(days=-999999999, seconds=-1) is below timedelta.min.
        return None, "OverflowError", str(error)


def pycti_seconds(text):
    """pycti's period in whole seconds for the environment value `text`, or None when it refuses it."""
    # get_config_variable: `if result in TRUTHY: return True`, `if result in FALSY: return False`, and an empty
    # string is "not set" (its default, None, which no schedule accepts).
    if text in TRUTHY:
        value = True
    elif text in FALSY:
        value = False
    elif text == "":
        return None
    else:
        value = text
    # schedule_iso: the string "0" never reaches pydantic.
    if value == "0":
        return 0
    delta, error, _ = pydantic_result(value)
    if error is not None:
        return None
    # int() truncates towards zero: PT0.5S and -PT0.5S both give 0 (run once), PT1.9S gives 1.
    return int(delta.total_seconds())


def vector(text):
    delta, error, message = pydantic_result(text)
    microseconds = None
    if delta is not None:
        # timedelta keeps days (signed), seconds and microseconds (both non-negative): exact integer arithmetic.
        microseconds = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return {
        "input": text,
        "seconds": None if delta is None else delta.total_seconds(),
        "microseconds": microseconds,
        "error": error,
        "message": message,
        "pycti_seconds": pycti_seconds(text),
    }


def main():
    if len(INPUTS) != len(set(INPUTS)):
        sys.exit("duplicate inputs")
    output = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT
    # One vector a line: readable, and a regeneration diffs line by line.
    lines = [json.dumps(vector(text), ensure_ascii=False) for text in INPUTS]
    output.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    print(f"{len(lines)} vectors -> {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
