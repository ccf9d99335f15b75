//! ISO-8601 durations (`P1D`, `PT1H30M`, `P1DT2H3M4.5S`, `P2W`) → [`std::time::Duration`], the form pycti
//! connectors use for `CONNECTOR_DURATION_PERIOD`.
//!
//! Only units of a fixed length are accepted: weeks (7 days), days (24 hours), hours, minutes and seconds. Years and
//! months are **rejected** rather than taken as 365 or 30 days: a schedule that silently differs from what the user
//! wrote is worse than an error at startup, and pycti cannot turn them into seconds either.

use std::time::Duration;

/// Why a text is not an ISO-8601 duration this connector can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationError {
    /// Not of the form `P[nW][nD][T[nH][nM][nS]]`.
    Syntax,
    /// Uses years or months, which have no fixed length.
    Calendar,
    /// Longer than a `Duration` can hold.
    TooLong,
}

const NANOS_PER_SECOND: u128 = 1_000_000_000;
/// More integer digits than this cannot fit a `Duration` in any unit; refusing them early keeps the sums in `u128`.
const MAX_INTEGER_DIGITS: usize = 20;
/// Fraction digits beyond this are below a nanosecond even for weeks, and are ignored.
const MAX_FRACTION_DIGITS: usize = 18;

/// Parses `P[nW][nD][T[nH][nM][nS]]`, designators in that order, each at most once, at least one of them; the
/// last (smallest) one may carry a fraction (`PT1.5S`, `P0,5D`). Designators may be lowercase. No sign is allowed.
pub fn parse_iso8601_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim().to_ascii_uppercase();
    let body = text.strip_prefix('P').ok_or(DurationError::Syntax)?.as_bytes();

    let mut total: u128 = 0;
    let mut in_time = false;
    let mut time_components = 0;
    // Rank of the last designator seen: each must come after the previous one.
    let mut last_rank = 0;
    let mut had_fraction = false;
    let mut at = 0;
    while at < body.len() {
        if body[at] == b'T' {
            if in_time {
                return Err(DurationError::Syntax);
            }
            in_time = true;
            at += 1;
            continue;
        }
        let Component { integer, fraction, designator, end } = component(body, at)?;
        at = end;
        let (rank, seconds): (u8, u128) = match (in_time, designator) {
            (false, b'Y' | b'M') => return Err(DurationError::Calendar),
            (false, b'W') => (1, 7 * 86_400),
            (false, b'D') => (2, 86_400),
            (true, b'H') => (3, 3_600),
            (true, b'M') => (4, 60),
            (true, b'S') => (5, 1),
            _ => return Err(DurationError::Syntax),
        };
        // Only the last component may have a fraction, and designators come in order.
        if had_fraction || rank <= last_rank {
            return Err(DurationError::Syntax);
        }
        last_rank = rank;
        if in_time {
            time_components += 1;
        }
        had_fraction = !fraction.is_empty();
        total += nanos(integer, fraction, seconds * NANOS_PER_SECOND)?;
    }
    if last_rank == 0 || (in_time && time_components == 0) {
        return Err(DurationError::Syntax);
    }
    let seconds = u64::try_from(total / NANOS_PER_SECOND).map_err(|_| DurationError::TooLong)?;
    // The remainder of a division by 10^9 always fits.
    let subsec = (total % NANOS_PER_SECOND) as u32;
    Ok(Duration::new(seconds, subsec))
}

/// One `<digits>[(.|,)<digits>]<designator>`.
struct Component<'a> {
    integer: &'a [u8],
    fraction: &'a [u8],
    designator: u8,
    /// Where the next component starts.
    end: usize,
}

/// The component that starts at `at`.
fn component(body: &[u8], at: usize) -> Result<Component<'_>, DurationError> {
    let digits_end = |from: usize| (from..body.len()).find(|&i| !body[i].is_ascii_digit()).unwrap_or(body.len());
    let integer_end = digits_end(at);
    if integer_end == at {
        return Err(DurationError::Syntax);
    }
    let integer = &body[at..integer_end];
    let (fraction, end) = match body.get(integer_end) {
        Some(b'.' | b',') => {
            let fraction_end = digits_end(integer_end + 1);
            if fraction_end == integer_end + 1 {
                return Err(DurationError::Syntax);
            }
            (&body[integer_end + 1..fraction_end], fraction_end)
        }
        _ => (&body[integer_end..integer_end], integer_end),
    };
    let designator = *body.get(end).ok_or(DurationError::Syntax)?;
    Ok(Component { integer, fraction, designator, end: end + 1 })
}

/// `integer.fraction` units of `unit_nanos` nanoseconds, truncated to whole nanoseconds.
fn nanos(integer: &[u8], fraction: &[u8], unit_nanos: u128) -> Result<u128, DurationError> {
    if integer.len() > MAX_INTEGER_DIGITS {
        return Err(DurationError::TooLong);
    }
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let whole = decimal(integer) * unit_nanos;
    let scale = 10u128.pow(fraction.len() as u32);
    Ok(whole + decimal(fraction) * unit_nanos / scale)
}

/// The value of ASCII digits (at most 20 of them, checked by the caller).
fn decimal(digits: &[u8]) -> u128 {
    digits.iter().fold(0, |value, digit| value * 10 + u128::from(digit - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> f64 {
        parse_iso8601_duration(text).unwrap().as_secs_f64()
    }

    #[test]
    fn valid_durations() {
        let table: &[(&str, f64)] = &[
            ("P1D", 86_400.0),
            ("PT1H", 3_600.0),
            ("PT30M", 1_800.0),
            ("PT1H30M", 5_400.0),
            ("P1DT12H", 129_600.0),
            ("P1DT2H3M4.5S", 93_784.5),
            ("PT1.5S", 1.5),
            ("PT0,25S", 0.25),
            ("P0.5D", 43_200.0),
            ("P1W", 604_800.0),
            ("P2W1D", 1_296_000.0),
            ("PT0S", 0.0),
            ("P0D", 0.0),
            ("pt5m", 300.0),
            (" PT1H ", 3_600.0),
            ("PT90M", 5_400.0),
        ];
        for &(text, expected) in table {
            assert_eq!(secs(text), expected, "{text}");
        }
        assert!(parse_iso8601_duration("PT0S").unwrap().is_zero());
        assert!(parse_iso8601_duration("P0D").unwrap().is_zero());
        assert_eq!(parse_iso8601_duration("PT0.000000001S").unwrap(), Duration::from_nanos(1));
    }

    #[test]
    fn invalid_durations() {
        for text in [
            "",
            "P",
            "PT",
            "1h",
            "P1H",
            "PT-1H",
            "P-1D",
            "PT1D",
            "P1DT",
            "PT1H1H",
            "PT1M1H",
            "P1D1W",
            "PT1.5M30S",
            "PT.5S",
            "PT1.S",
            "PT1",
            "P1",
            "P1DX",
            "PTT1H",
            "P1D T1H",
            "PT+1H",
            "3600",
        ] {
            assert_eq!(parse_iso8601_duration(text), Err(DurationError::Syntax), "{text:?}");
        }
    }

    #[test]
    fn months_and_years_are_rejected() {
        for text in ["P1M", "P1Y", "P1Y2M3D", "P0M"] {
            assert_eq!(parse_iso8601_duration(text), Err(DurationError::Calendar), "{text}");
        }
    }

    #[test]
    fn too_long() {
        assert_eq!(parse_iso8601_duration("P99999999999999999999W"), Err(DurationError::TooLong));
        assert_eq!(parse_iso8601_duration("P999999999999999999999D"), Err(DurationError::TooLong));
        assert!(parse_iso8601_duration("PT18446744073709551615S").is_ok());
        assert_eq!(parse_iso8601_duration("PT18446744073709551616S"), Err(DurationError::TooLong));
    }
}
