//! `CONNECTOR_DURATION_PERIOD` → [`Duration`] exactly as pycti reads it, through pydantic's `TypeAdapter(timedelta)`.
//!
//! pycti 7.261026.0 (`schedule_iso`, and the helper's constructor) takes the string `"0"` as "run once" and passes
//! every other value to pydantic 2.14.4, whose timedelta parser is the speedate 0.18 crate (called with
//! `microseconds_precision='truncate'`), then schedules `int(td.total_seconds())` seconds, a period of 0 meaning
//! run once. [`parse_duration`] is pydantic's part; [`pycti_period`] adds pycti's.
//!
//! The forms speedate accepts, each optionally preceded by one `-` or `+` (the sign applies to the whole text, so
//! `-1 day, 23:00:00` is minus 47 hours, not Python's rendering of minus one hour), with no surrounding space:
//!
//! - **ISO 8601**: `P`, then numbers each followed by an upper-case designator; a `T` switches from the date
//!   designators `Y` (365 days), `M` (30 days), `W` (7 days) and `D` to the time designators `H`, `M`, `S`.
//!   Designators may come in any order and repeat (`P1D1D` is two days, `PT1S1H` 3601 s); `P1DT` (a trailing `T`)
//!   is accepted, `P`, `PT` and `PTT…` are not. A number is ASCII digits fitting 32 bits, optionally followed by
//!   `.` or `,` and any number of digits (`PT1.S` is one second); a number with a fraction must be the last one.
//!   The fraction is computed in `f64` and rounded to the microsecond (`PT0.0000005S` is 1 µs; 309 or more
//!   fraction digits overflow the float and count as nothing). The sum of the time part must fit 32 bits of
//!   seconds (`PT4294967296S` is refused).
//! - **Clock time**: `[H…]:MM[:SS[.f…]]` of at least five characters: any number of hours up to 2,400,000,000
//!   (also none: `:30:00` is 30 minutes), then two-digit minutes and seconds below 60 and up to six fraction
//!   digits after `.` or `,`. Only the first 12 characters after the first colon are read, the rest is ignored
//!   (`1:00:00.1234567abc` is accepted); `00:30` is 30 minutes.
//! - **Days**: digits (32 bits), an optional single space, `d` or `D`, optionally `ay`/`ays` (or `AY`/`AYS`), then
//!   optionally `,` and/or one space and a clock time whose hours are below 24: `1d`, `2 days`, `1 DAY`,
//!   `1 day, 01:00:00`, `1d01:00:00`. A text containing `d` or `D`, or shorter than five characters, is read in
//!   this form (so `0`, `3600` and `1h` are refused).
//!
//! Nothing else: no bare numbers (pydantic takes numbers as seconds only when they are not strings), no lower-case
//! ISO designators, no `h`/`m`/`s` suffixes, no surrounding space. The total may not exceed 999,999,999 days and
//! 86,399.999999 seconds.

use std::time::Duration;

/// Why a text is not a duration pydantic accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// pydantic refuses it (`time_delta_parsing`).
    Syntax,
    /// pydantic accepts it as a negative timedelta, which a connector cannot wait.
    Negative,
    /// A number, or the total, is beyond what pydantic accepts (`time_delta_parsing`, "too large"/"may not
    /// exceed"), or Python's `timedelta` cannot hold it (an `OverflowError` for `-P999999999DT1S`).
    TooLong,
}

/// Python's `timedelta.max.days`, and speedate's limit.
const MAX_DAYS: u32 = 999_999_999;
/// speedate's limit on the hours of a clock time, 10^8 days.
const MAX_CLOCK_HOURS: u64 = 2_400_000_000;
/// Characters after the first colon of a clock time that are read (`MM:SS.ffffff`); pydantic truncates the rest.
const CLOCK_TAIL: usize = 12;
const MICROS_PER_SECOND: u32 = 1_000_000;
const SECONDS_PER_DAY: u32 = 86_400;

/// Parses `text` as pydantic's `TypeAdapter(timedelta).validate_python(text)` does (see the module documentation
/// for the forms), to the microsecond.
///
/// Where pydantic returns a negative `timedelta` (`-P1D` gives `timedelta(days=-1)`, `-01:00:00` gives
/// `timedelta(seconds=-3600)`), this returns [`DurationError::Negative`]; a negative zero (`-PT0S`) is zero, as in
/// pydantic. pycti itself would schedule a negative period as back-to-back
/// runs; see [`pycti_period`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let parsed = speedate(text.as_bytes())?;
    if parsed.negative && parsed.day == MAX_DAYS && (parsed.second > 0 || parsed.micro > 0) {
        // timedelta(days=-999999999, seconds=-1) is below timedelta.min: pydantic lets Python's OverflowError out.
        return Err(DurationError::TooLong);
    }
    if parsed.negative && !parsed.is_zero() {
        return Err(DurationError::Negative);
    }
    Ok(Duration::new(
        u64::from(parsed.day) * u64::from(SECONDS_PER_DAY) + u64::from(parsed.second),
        parsed.micro * 1_000,
    ))
}

/// The period pycti schedules for the environment value `text`, in whole seconds; zero means run once.
///
/// pycti's `get_config_variable` first turns `yes`/`true`/`True` into `True` and `no`/`false`/`False` into `False`,
/// which pydantic takes as 1 and 0 seconds, and an empty value into "not set" (refused here as
/// [`DurationError::Syntax`]: the caller decides what unset means). `schedule_iso` then takes `"0"` as zero without
/// asking pydantic (which refuses it), and otherwise truncates pydantic's duration towards zero: `PT1.9S` is one
/// second, `PT0.5S` and even `-PT0.5S` are zero (run once), and only periods of -1 s or less are
/// [`DurationError::Negative`] (pycti would run them back to back).
pub fn pycti_period(text: &str) -> Result<Duration, DurationError> {
    match text {
        "0" | "no" | "false" | "False" => return Ok(Duration::ZERO),
        "yes" | "true" | "True" => return Ok(Duration::from_secs(1)),
        _ => {}
    }
    match parse_duration(text) {
        Ok(duration) => Ok(Duration::from_secs(python_int_of_seconds(duration.as_micros()))),
        Err(DurationError::Negative) => {
            let parsed = speedate(text.as_bytes())?;
            match python_int_of_seconds(parsed.total_micros()) {
                0 => Ok(Duration::ZERO),
                _ => Err(DurationError::Negative),
            }
        }
        Err(error) => Err(error),
    }
}

/// Python's `int(timedelta(microseconds=micros).total_seconds())` for a magnitude: the division is rounded to the
/// nearest `f64` (CPython divides the integers exactly, then rounds once), and `int` truncates.
/// `micros` is at most (999,999,999 days + 86,399.999999 s) in microseconds, about 8.64e19.
fn python_int_of_seconds(micros: u128) -> u64 {
    const EXACT: u128 = 1 << f64::MANTISSA_DIGITS;
    let micros_per_second = u128::from(MICROS_PER_SECOND);
    let Ok(whole) = u64::try_from(micros / micros_per_second) else {
        return u64::MAX;
    };
    let part = micros % micros_per_second;
    if micros < EXACT {
        // Both operands are exact doubles: one IEEE division is the correctly rounded quotient, as in CPython.
        return (micros as f64 / f64::from(MICROS_PER_SECOND)) as u64;
    }
    if part == 0 {
        return whole;
    }
    // whole < 2^47 (999,999,999 days), so it is an exact double, and the doubles just below `next = whole + 1` are
    // 2^gap_exponent = 2^(1 - shift) apart, shift >= 7: the quotient rounds up to `next` iff `next` - quotient is
    // under half that gap, i.e. (10^6 - part) * 2^shift < 10^6. A tie would need 2^shift to divide 10^6 = 2^6 * 5^6,
    // which it cannot.
    let next = whole + 1;
    let exponent = i64::from(u64::BITS - 1 - next.leading_zeros());
    let gap_exponent = exponent - i64::from(f64::MANTISSA_DIGITS) + if next.is_power_of_two() { 0 } else { 1 };
    let Ok(shift) = u32::try_from(1 - gap_exponent) else {
        return whole;
    };
    let below = micros_per_second - part;
    match below.checked_shl(shift) {
        Some(scaled) if scaled < micros_per_second => next,
        _ => whole,
    }
}

/// speedate's `Duration`: a sign and a normalised magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Parsed {
    negative: bool,
    day: u32,
    /// Below 86,400 once normalised.
    second: u32,
    /// Below 1,000,000 once normalised.
    micro: u32,
}

impl Parsed {
    fn is_zero(self) -> bool {
        self.day == 0 && self.second == 0 && self.micro == 0
    }

    /// The magnitude in microseconds (up to about 8.64e19, beyond 64 bits).
    fn total_micros(self) -> u128 {
        (u128::from(self.day) * u128::from(SECONDS_PER_DAY) + u128::from(self.second)) * u128::from(MICROS_PER_SECOND)
            + u128::from(self.micro)
    }
}

/// `checked_add` and `checked_mul` as speedate's `checked!`: an overflow of 32 bits is "too large".
fn add(a: u32, b: u32) -> Result<u32, DurationError> {
    a.checked_add(b).ok_or(DurationError::TooLong)
}

fn mul(a: u32, b: u32) -> Result<u32, DurationError> {
    a.checked_mul(b).ok_or(DurationError::TooLong)
}

/// speedate 0.18 `Duration::parse_bytes_with_config` with pydantic's configuration.
fn speedate(bytes: &[u8]) -> Result<Parsed, DurationError> {
    let (negative, body) = match bytes {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, bytes),
    };
    let mut parsed = match body {
        [] => return Err(DurationError::Syntax),
        [b'P', iso @ ..] => iso_duration(iso)?,
        _ if body.iter().any(|&byte| byte == b'd' || byte == b'D') || body.len() < 5 => days_and_time(body)?,
        _ => clock_time(body)?,
    };
    parsed.negative = negative;
    normalize(parsed)
}

/// Carries microseconds into seconds and seconds into days; refuses more than [`MAX_DAYS`].
fn normalize(mut parsed: Parsed) -> Result<Parsed, DurationError> {
    if parsed.micro >= MICROS_PER_SECOND {
        parsed.second = add(parsed.second, parsed.micro / MICROS_PER_SECOND)?;
        parsed.micro %= MICROS_PER_SECOND;
    }
    if parsed.second >= SECONDS_PER_DAY {
        parsed.day = add(parsed.day, parsed.second / SECONDS_PER_DAY)?;
        parsed.second %= SECONDS_PER_DAY;
    }
    if parsed.day > MAX_DAYS {
        return Err(DurationError::TooLong);
    }
    Ok(parsed)
}

/// The ISO 8601 form after its `P`.
fn iso_duration(bytes: &[u8]) -> Result<Parsed, DurationError> {
    let mut got_t = false;
    let mut last_had_fraction = false;
    let mut parsed = Parsed::default();
    let mut position = 0;
    while let Some(&byte) = bytes.get(position) {
        if byte == b'T' {
            if got_t {
                return Err(DurationError::Syntax);
            }
            got_t = true;
        } else {
            let (value, fraction, length) = number_with_fraction(&bytes[position..])?;
            if last_had_fraction {
                return Err(DurationError::Syntax);
            }
            last_had_fraction = fraction.is_some();
            position += length;
            let designator = bytes.get(position).copied();
            if got_t {
                let unit = match designator {
                    Some(b'H') => 3_600,
                    Some(b'M') => 60,
                    Some(b'S') => 1,
                    _ => return Err(DurationError::Syntax),
                };
                parsed.second = add(parsed.second, mul(unit, value)?)?;
                if let Some(fraction) = fraction {
                    let extra_seconds = fraction * f64::from(unit);
                    let extra_full_seconds = extra_seconds.trunc();
                    parsed.second = add(parsed.second, extra_full_seconds as u32)?;
                    let extra_micros = ((extra_seconds - extra_full_seconds) * 1_000_000.0).round() as u32;
                    parsed.micro = add(parsed.micro, extra_micros)?;
                }
            } else {
                let unit = match designator {
                    Some(b'Y') => 365,
                    Some(b'M') => 30,
                    Some(b'W') => 7,
                    Some(b'D') => 1,
                    _ => return Err(DurationError::Syntax),
                };
                parsed.day = add(parsed.day, mul(value, unit)?)?;
                if let Some(fraction) = fraction {
                    let extra_days = fraction * f64::from(unit);
                    let extra_full_days = extra_days.trunc();
                    parsed.day = add(parsed.day, extra_full_days as u32)?;
                    let extra_seconds = (extra_days - extra_full_days) * 86_400.0;
                    let extra_full_seconds = extra_seconds.trunc();
                    parsed.second = add(parsed.second, extra_full_seconds as u32)?;
                    let extra_micros = ((extra_seconds - extra_full_seconds) * 1_000_000.0).round() as u32;
                    parsed.micro = add(parsed.micro, extra_micros)?;
                }
            }
        }
        position += 1;
    }
    // At least one number: `P` and `PT` are too short.
    if position < 2 {
        return Err(DurationError::Syntax);
    }
    Ok(parsed)
}

/// Leading ASCII digits as a `u32` and how many there are; the first byte must be a digit.
fn number(bytes: &[u8]) -> Result<(u32, usize), DurationError> {
    let mut value = 0u32;
    let mut length = 0;
    while let Some(&byte) = bytes.get(length).filter(|byte| byte.is_ascii_digit()) {
        value = add(mul(value, 10)?, u32::from(byte - b'0'))?;
        length += 1;
    }
    if length == 0 {
        return Err(DurationError::Syntax);
    }
    Ok((value, length))
}

/// [`number`], then optionally `.` or `,` and digits (possibly none), their value computed in `f64` as speedate
/// does: the digits as a float over a power of ten that is itself a float.
fn number_with_fraction(bytes: &[u8]) -> Result<(u32, Option<f64>, usize), DurationError> {
    let (value, mut position) = number(bytes)?;
    if !matches!(bytes.get(position), Some(b'.' | b',')) {
        return Ok((value, None, position));
    }
    let mut decimal = 0f64;
    let mut denominator = 1f64;
    position += 1;
    while let Some(&byte) = bytes.get(position).filter(|byte| byte.is_ascii_digit()) {
        decimal = decimal * 10.0 + f64::from(byte - b'0');
        denominator *= 10.0;
        position += 1;
    }
    Ok((value, Some(decimal / denominator), position))
}

/// `N[ ](d|D)[ay|ays|AY|AYS][,][ ][clock time below 24 hours]`.
fn days_and_time(bytes: &[u8]) -> Result<Parsed, DurationError> {
    let (day, length) = number(bytes)?;
    let rest = match &bytes[length..] {
        [b' ', b'd' | b'D', rest @ ..] | [b'd' | b'D', rest @ ..] => rest,
        _ => return Err(DurationError::Syntax),
    };
    let rest = match rest {
        [b'a', b'y', b's', rest @ ..] => rest,
        [b'a', b'y', rest @ ..] => rest,
        [b'A', b'Y', b'S', rest @ ..] => rest,
        [b'A', b'Y', rest @ ..] => rest,
        [b'a' | b'A', ..] => return Err(DurationError::Syntax),
        rest => rest,
    };
    let rest = match rest {
        [b',', b' ', rest @ ..] => rest,
        [b',', rest @ ..] => rest,
        [b' ', rest @ ..] => rest,
        rest => rest,
    };
    if rest.is_empty() {
        return Ok(Parsed { day, ..Parsed::default() });
    }
    let time = clock_time(rest)?;
    if time.day > 0 {
        // `1d 24:00:00`.
        return Err(DurationError::Syntax);
    }
    Ok(Parsed { day, ..time })
}

/// `[H…]:MM[:SS[(.|,)f…]]`, at least five characters.
fn clock_time(bytes: &[u8]) -> Result<Parsed, DurationError> {
    if bytes.len() < 5 {
        return Err(DurationError::Syntax);
    }
    let colon = bytes.iter().position(|&byte| byte == b':').ok_or(DurationError::Syntax)?;
    let (hour_part, tail) = (&bytes[..colon], &bytes[colon + 1..]);
    if hour_part.len() > 10 {
        return Err(DurationError::TooLong);
    }
    let mut hour = 0u64;
    for &byte in hour_part {
        if !byte.is_ascii_digit() {
            return Err(DurationError::Syntax);
        }
        hour = hour * 10 + u64::from(byte - b'0');
    }
    if hour > MAX_CLOCK_HOURS {
        return Err(DurationError::TooLong);
    }
    // speedate copies the tail behind `00:` into 15 bytes; pydantic's `truncate` cuts what does not fit.
    let tail = &tail[..tail.len().min(CLOCK_TAIL)];
    let digit = |at: usize| tail.get(at).filter(|byte| byte.is_ascii_digit()).map(|byte| u32::from(byte - b'0'));
    let two_digits = |at: usize| Some(digit(at)? * 10 + digit(at + 1)?);
    if tail.len() < 2 {
        return Err(DurationError::Syntax);
    }
    let minute = two_digits(0).ok_or(DurationError::Syntax)?;
    if minute > 59 {
        return Err(DurationError::Syntax);
    }
    let (second, micro, length) = if tail.get(2) == Some(&b':') {
        let second = two_digits(3).ok_or(DurationError::Syntax)?;
        if second > 59 {
            return Err(DurationError::Syntax);
        }
        if matches!(tail.get(5), Some(b'.' | b',')) {
            let digits = tail[6..].iter().take_while(|byte| byte.is_ascii_digit()).count();
            if digits == 0 {
                return Err(DurationError::Syntax);
            }
            // At most six digits fit in the 12 characters read.
            let micro = tail[6..6 + digits].iter().fold(0, |micro, byte| micro * 10 + u32::from(byte - b'0'))
                * 10u32.pow(6u32.saturating_sub(digits as u32));
            (second, micro, 6 + digits)
        } else {
            (second, 0, 5)
        }
    } else {
        (0, 0, 2)
    };
    if tail.len() > length {
        return Err(DurationError::Syntax);
    }
    // hour <= 2.4e9 fits 32 bits, as in speedate.
    let hour = hour as u32;
    Ok(Parsed { negative: false, day: hour / 24, second: (hour % 24) * 3_600 + minute * 60 + second, micro })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> Result<u128, DurationError> {
        parse_duration(text).map(|duration| duration.as_micros())
    }

    const DAY: u128 = 86_400_000_000;
    const HOUR: u128 = 3_600_000_000;
    const SECOND: u128 = 1_000_000;

    #[test]
    fn iso_8601() {
        let table: &[(&str, u128)] = &[
            ("P1Y", 365 * DAY),
            ("P1M", 30 * DAY),
            ("P1W", 7 * DAY),
            ("P1D", DAY),
            ("PT1H", HOUR),
            ("PT1M", 60 * SECOND),
            ("PT1S", SECOND),
            ("P1Y2M3DT4H5M6S", 428 * DAY + 4 * HOUR + 306 * SECOND),
            ("P1W1D", 8 * DAY),
            ("PT0S", 0),
            ("P0D", 0),
            ("+P1D", DAY),
            ("P1DT", DAY),
            ("P1D1D", 2 * DAY),
            ("PT1S1H", HOUR + SECOND),
            ("PT36H", 36 * HOUR),
        ];
        for &(text, expected) in table {
            assert_eq!(micros(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn fractions_round_to_the_microsecond() {
        let table: &[(&str, u128)] = &[
            ("PT1.5S", 1_500_000),
            ("PT0,5S", 500_000),
            ("P0.5D", DAY / 2),
            ("P1.5Y", 547 * DAY + 12 * HOUR),
            ("P1.123W", 7 * DAY + 74_390_400_000),
            ("PT1.123456789S", 1_123_457),
            ("PT0.0000005S", 1),
            ("PT0.00000049S", 0),
            ("PT0.9999999S", SECOND),
            ("PT1.S", SECOND),
        ];
        for &(text, expected) in table {
            assert_eq!(micros(text), Ok(expected), "{text}");
        }
        let nines = format!("PT0.{}S", "9".repeat(400));
        assert_eq!(micros(&nines), Ok(0), "the float overflows to NaN, which counts as nothing");
        for text in ["P0.5DT1H", "PT1.5H30M", "PT.5S", "PT1H.5S"] {
            assert_eq!(micros(text), Err(DurationError::Syntax), "{text}");
        }
    }

    #[test]
    fn clock_and_day_forms() {
        let table: &[(&str, u128)] = &[
            ("01:00:00", HOUR),
            ("1:00:00", HOUR),
            ("00:30", HOUR / 2),
            (":30:00", HOUR / 2),
            ("25:00:00", 25 * HOUR),
            ("1:00:00,5", HOUR + 500_000),
            ("01:00:00.1234567", HOUR + 123_456),
            ("1:00:00.123456abc", HOUR + 123_456),
            ("1d", DAY),
            ("1 day", DAY),
            ("2 days", 2 * DAY),
            ("1 DAYS", DAY),
            ("1 day, 01:00:00", DAY + HOUR),
            ("1 day 01:00:00", DAY + HOUR),
            ("1d01:00:00", DAY + HOUR),
            ("1 day, ", DAY),
            ("-0:00:00", 0),
        ];
        for &(text, expected) in table {
            assert_eq!(micros(text), Ok(expected), "{text}");
        }
        for text in ["1d1h", "1 dAys", "1  d", "1d 24:00:00", "1 day  01:00:00", "00:60", "1:00:00abc", "1:00"] {
            assert_eq!(micros(text), Err(DurationError::Syntax), "{text}");
        }
    }

    #[test]
    fn refused_like_pydantic() {
        for text in
            ["0", "3600", "1.5", "-1", "", " ", "P", "PT", "PTT1H", "1h", "abc", "p1d", "PT1H ", " PT1H", "P1", "PT1"]
        {
            assert_eq!(micros(text), Err(DurationError::Syntax), "{text:?}");
        }
    }

    #[test]
    fn negative() {
        for text in ["-P1D", "-01:00:00", "-1d", "-PT0.5S", "-P999999999D"] {
            assert_eq!(micros(text), Err(DurationError::Negative), "{text}");
        }
        assert_eq!(micros("-PT0S"), Ok(0));
        assert_eq!(micros("-P999999999DT1S"), Err(DurationError::TooLong), "Python's OverflowError");
    }

    #[test]
    fn limits() {
        assert_eq!(micros("P999999999D"), Ok(999_999_999 * DAY));
        assert_eq!(micros("P2739726Y"), Ok(999_999_990 * DAY));
        assert_eq!(micros("PT4294967295S"), Ok(4_294_967_295 * SECOND));
        for text in ["P1000000000D", "P2739727Y", "PT4294967296S", "PT1193047H", "P99999999999999999999D"] {
            assert_eq!(micros(text), Err(DurationError::TooLong), "{text}");
        }
        assert_eq!(micros("2400000000:00:00"), Ok(100_000_000 * DAY));
        assert_eq!(micros("2400000001:00:00"), Err(DurationError::TooLong));
    }

    #[test]
    fn pycti_truncates_and_takes_zero_and_booleans() {
        let seconds = |text: &str| pycti_period(text).map(|duration| duration.as_secs());
        assert_eq!(seconds("0"), Ok(0));
        assert_eq!(seconds("PT0.5S"), Ok(0));
        assert_eq!(seconds("-PT0.5S"), Ok(0));
        assert_eq!(seconds("PT1.9S"), Ok(1));
        assert_eq!(seconds("PT1H"), Ok(3_600));
        assert_eq!(seconds("true"), Ok(1));
        assert_eq!(seconds("False"), Ok(0));
        assert_eq!(seconds("TRUE"), Err(DurationError::Syntax));
        assert_eq!(seconds(""), Err(DurationError::Syntax));
        assert_eq!(seconds("-PT1S"), Err(DurationError::Negative));
        // 86,399,999,999,999.999999 s is not a double: it rounds up to 86,400,000,000,000 before int() truncates.
        assert_eq!(seconds("P999999999DT86399.999999S"), Ok(86_400_000_000_000));
        assert!(pycti_period("PT0.5S").is_ok_and(|duration| duration.subsec_nanos() == 0));
    }

    #[test]
    fn python_int_of_seconds_is_cpythons() {
        for micros in [0, 1, 999_999, 1_000_000, 1_999_999, (1 << 53) - 1] {
            assert_eq!(python_int_of_seconds(micros), (micros as f64 / 1e6) as u64, "{micros}");
        }
        // int(timedelta(microseconds=m).total_seconds()) in CPython; 2^44 s is a power of two.
        let table: &[(u128, u64)] = &[
            (9_007_199_254_999_999, 9_007_199_254),
            (86_399_999_999_999_999_999, 86_400_000_000_000),
            (86_399_999_999_999_990_000, 86_399_999_999_999),
            (86_399_999_999_999_992_188, 86_400_000_000_000),
            (86_399_999_999_999_992_187, 86_399_999_999_999),
            (17_592_186_044_415_999_999, 17_592_186_044_416),
            (17_592_186_044_415_996_000, 17_592_186_044_415),
            (10_000_000_000_000_999_999, 10_000_000_000_001),
            (10_000_000_000_000_999_000, 10_000_000_000_000),
        ];
        for &(micros, seconds) in table {
            assert_eq!(python_int_of_seconds(micros), seconds, "{micros}");
        }
    }
}
