//! STIX timestamps: RFC 3339 in UTC with a `Z` and millisecond precision, e.g. `2026-08-23T10:11:12.000Z`.
//!
//! A timestamp is kept as milliseconds since the Unix epoch so that it is `Copy`, ordered and cheap to format on
//! the hot path. Civil-date conversion uses Howard Hinnant's `days_from_civil` algorithms, exact over the whole
//! proleptic Gregorian calendar, so no date crate is needed.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, as STIX writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    millis: i64,
}

/// Why a text is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampError {
    text: String,
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not an RFC 3339 timestamp (expected e.g. 2026-08-23T10:11:12Z)", self.text)
    }
}

impl std::error::Error for TimestampError {}

impl Timestamp {
    /// The timestamp `millis` milliseconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self { millis }
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.millis
    }

    /// Whole seconds since the Unix epoch (rounded down).
    pub const fn unix_seconds(self) -> i64 {
        self.millis.div_euclid(1000)
    }

    /// The current time, truncated to the millisecond.
    pub fn now() -> Self {
        let millis = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Self { millis }
    }

    /// Builds a timestamp from UTC civil fields. Returns `None` when a field is out of range.
    pub fn from_civil(
        year: i64,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
        millis: u32,
    ) -> Option<Self> {
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            // 60 admits a leap second, folded onto the next second as most systems do.
            || second > 60
            || millis > 999
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
        Some(Self { millis: secs * 1000 + i64::from(millis) })
    }

    /// Parses RFC 3339 (`2026-08-23T10:11:12Z`, `...12.5+02:00`, `t`/space separator, any fraction length).
    /// Digits beyond the millisecond are truncated.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        parse(text.as_bytes()).ok_or_else(|| TimestampError { text: text.to_owned() })
    }

    /// The UTC civil fields `(year, month, day, hour, minute, second, millisecond)`.
    pub fn to_civil(self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let days = self.millis.div_euclid(86_400_000);
        let in_day = self.millis.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        // `in_day` is within 0..86_400_000, so every cast below is lossless.
        let ms = (in_day % 1000) as u32;
        let secs = (in_day / 1000) as u32;
        (y, m, d, secs / 3600, (secs / 60) % 60, secs % 60, ms)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`, the second-precision form OpenCTI's connector info uses.
    pub fn to_seconds_string(self) -> String {
        let (y, mo, d, h, mi, s, _) = self.to_civil();
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

impl Timestamp {
    /// Writes `YYYY-MM-DDTHH:MM:SS.mmmZ` into `buffer` without the formatting machinery (timestamps are written by
    /// the million). `None` for a year outside 0..=9999, which needs more digits.
    fn encode<'b>(&self, buffer: &'b mut [u8; 24]) -> Option<&'b str> {
        let (y, mo, d, h, mi, s, ms) = self.to_civil();
        let year = u32::try_from(y).ok().filter(|y| *y <= 9999)?;
        let mut put = |at: usize, value: u32, width: usize| {
            let mut value = value;
            for i in (at..at + width).rev() {
                buffer[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, year, 4);
        put(5, mo, 2);
        put(8, d, 2);
        put(11, h, 2);
        put(14, mi, 2);
        put(17, s, 2);
        put(20, ms, 3);
        for (at, separator) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')] {
            buffer[at] = separator;
        }
        std::str::from_utf8(buffer).ok()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.encode(&mut [0; 24]) {
            return f.write_str(text);
        }
        let (y, mo, d, h, mi, s, ms) = self.to_civil();
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.encode(&mut [0; 24]) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn digits(bytes: &[u8], at: usize, len: usize) -> Option<u32> {
    let slice = bytes.get(at..at + len)?;
    slice.iter().try_fold(0u32, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
}

fn parse(b: &[u8]) -> Option<Timestamp> {
    let year = digits(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    let mut at = 19;
    let mut millis = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                millis = millis * 10 + u32::from(b[at] - b'0');
            }
            at += 1;
        }
        let len = at - start;
        if len == 0 {
            return None;
        }
        for _ in len..3 {
            millis *= 10;
        }
    }
    let offset_minutes: i64 = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && b[at + 3] == b':' => {
            let h = i64::from(digits(b, at + 1, 2)?);
            let m = i64::from(digits(b, at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'+' { h * 60 + m } else { -(h * 60 + m) }
        }
        _ => return None,
    };
    let local = Timestamp::from_civil(i64::from(year), month, day, hour, minute, second, millis)?;
    Some(Timestamp { millis: local.millis - offset_minutes * 60_000 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        assert_eq!(Timestamp::from_unix_millis(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::from_unix_millis(1_787_400_000_123).to_string(), "2026-08-22T12:00:00.123Z");
        assert_eq!(Timestamp::from_unix_millis(-1).to_string(), "1969-12-31T23:59:59.999Z");
        let far = Timestamp::from_civil(12345, 1, 2, 3, 4, 5, 6).unwrap();
        assert_eq!(far.to_string(), "12345-01-02T03:04:05.006Z");
    }

    #[test]
    fn parses_rfc3339_forms() {
        let t = Timestamp::parse_rfc3339("2026-08-23T10:11:12Z").unwrap();
        assert_eq!(t.to_string(), "2026-08-23T10:11:12.000Z");
        let t = Timestamp::parse_rfc3339("2026-08-23T12:11:12.5+02:00").unwrap();
        assert_eq!(t.to_string(), "2026-08-23T10:11:12.500Z");
        let t = Timestamp::parse_rfc3339("2026-08-23 10:11:12.123456789-01:30").unwrap();
        assert_eq!(t.to_string(), "2026-08-23T11:41:12.123Z");
        assert_eq!(t.to_seconds_string(), "2026-08-23T11:41:12Z");
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "2026-08-23",
            "2026-08-23T10:11:12",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-08-23T24:00:00Z",
            "2026-08-23T10:11:12.Z",
            "2026-08-23T10:11:12Zjunk",
            "2026-08-23T10:11:12+0200",
            "２026-08-23T10:11:12Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn civil_round_trip_over_four_centuries() {
        // Every day from 1800 to 2200: format, parse back, same instant.
        let start = days_from_civil(1800, 1, 1);
        let end = days_from_civil(2200, 1, 1);
        for day in (start..end).step_by(7) {
            let t = Timestamp::from_unix_millis(day * 86_400_000 + 45_296_789);
            assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Ok(t));
        }
    }

    #[test]
    fn serde_uses_the_stix_form() {
        let t = Timestamp::from_unix_millis(1_000);
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"1970-01-01T00:00:01.000Z\"");
        let back: Timestamp = serde_json::from_str("\"1970-01-01T00:00:01Z\"").unwrap();
        assert_eq!(back, t);
    }
}
