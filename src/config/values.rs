//! Parsers of single values (booleans, bounded numbers, URLs, lists), each turning a bad value into an error that
//! names the variable and the expected form.

use std::fmt::Display;
use std::str::FromStr;

use super::ConfigError;

/// `Invalid` for `var`: "`{value}` {problem}".
pub(super) fn invalid(var: &'static str, value: &str, problem: impl Display) -> ConfigError {
    ConfigError::Invalid { var, message: format!("`{value}` {problem}") }
}

/// The value, or `Required` with what it is for.
pub(super) fn required<'a>(
    var: &'static str,
    value: Option<&'a str>,
    what: &'static str,
) -> Result<&'a str, ConfigError> {
    value.ok_or(ConfigError::Required { var, what: what.into() })
}

/// `true/false/yes/no/1/0/on/off`, any case, surrounding spaces ignored.
pub(super) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}

pub(super) fn optional_bool(var: &'static str, value: Option<&str>) -> Result<Option<bool>, ConfigError> {
    value
        .map(|text| parse_bool(text).ok_or_else(|| invalid(var, text, "is not a boolean (expected true or false)")))
        .transpose()
}

pub(super) fn boolean(var: &'static str, value: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    Ok(optional_bool(var, value)?.unwrap_or(default))
}

/// A whole number in `min..=max`; `what` names it in the error ("a port number").
pub(super) fn optional_number<T>(
    var: &'static str,
    value: Option<&str>,
    what: &str,
    min: T,
    max: T,
) -> Result<Option<T>, ConfigError>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    value
        .map(|text| match text.trim().parse::<T>() {
            Ok(number) if number >= min && number <= max => Ok(number),
            _ => Err(invalid(var, text, format_args!("is not {what} (a whole number from {min} to {max})"))),
        })
        .transpose()
}

pub(super) fn number<T>(
    var: &'static str,
    value: Option<&str>,
    what: &str,
    min: T,
    max: T,
    default: T,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    Ok(optional_number(var, value, what, min, max)?.unwrap_or(default))
}

/// An `http://` or `https://` URL with a host, without its trailing `/`s.
pub(super) fn http_url(var: &'static str, text: &str, example: &str) -> Result<String, ConfigError> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let rest = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://"));
    let has_host = rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if !has_host || text.chars().any(char::is_whitespace) {
        return Err(invalid(var, text, format_args!("is not an http:// or https:// URL (e.g. {example})")));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// A comma-separated list: items trimmed, empty items dropped.
pub(super) fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for text in ["true", "TRUE", " yes ", "1", "On"] {
            assert_eq!(parse_bool(text), Some(true), "{text}");
        }
        for text in ["false", "False", "no", "0", "OFF "] {
            assert_eq!(parse_bool(text), Some(false), "{text}");
        }
        for text in ["", "ture", "2", "y", "enabled"] {
            assert_eq!(parse_bool(text), None, "{text}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(http_url("V", "http://opencti:8080/", "x").unwrap(), "http://opencti:8080");
        assert_eq!(http_url("V", "HTTPS://a.b/prefix//", "x").unwrap(), "HTTPS://a.b/prefix");
        for bad in ["opencti:8080", "ftp://x", "http://", "https:///x", "http://a b"] {
            assert!(http_url("V", bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn lists() {
        assert_eq!(list(" a, b ,,c,"), ["a", "b", "c"]);
        assert!(list(" , ").is_empty());
    }

    #[test]
    fn numbers() {
        assert_eq!(number::<u16>("V", Some("80"), "a port number", 1, u16::MAX, 1).unwrap(), 80);
        assert_eq!(number::<u16>("V", None, "a port number", 1, u16::MAX, 9).unwrap(), 9);
        let error = number::<u16>("V", Some("70000"), "a port number", 1, u16::MAX, 1).unwrap_err();
        assert_eq!(error.to_string(), "V: `70000` is not a port number (a whole number from 1 to 65535)");
        assert!(number::<u16>("V", Some("0"), "a port number", 1, u16::MAX, 1).is_err());
        assert!(number::<u16>("V", Some("-1"), "a port number", 1, u16::MAX, 1).is_err());
    }
}
