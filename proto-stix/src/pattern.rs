//! STIX 2.1 patterns for the observations Maltrail trails describe, with string literals escaped as the pattern
//! grammar requires (`\` and `'` backslash-escaped, nothing else).
//!
//! Every comparison joined by `AND` inside one `[...]` must be about the same object, which is why a trail with a
//! port becomes a `network-traffic` pattern rather than an address pattern with a port beside it.

use std::fmt::{self, Write};

/// The observable type OpenCTI shows as an indicator's main observable (`x_opencti_main_observable_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MainObservableType {
    Ipv4Addr,
    Ipv6Addr,
    DomainName,
    Url,
}

impl MainObservableType {
    /// OpenCTI's entity type name, e.g. `IPv4-Addr`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4Addr => "IPv4-Addr",
            Self::Ipv6Addr => "IPv6-Addr",
            Self::DomainName => "Domain-Name",
            Self::Url => "Url",
        }
    }
}

/// The destination of a network-traffic observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination<'a> {
    Ipv4(&'a str),
    Ipv6(&'a str),
    Domain(&'a str),
}

impl<'a> Destination<'a> {
    /// The STIX type of the `dst_ref` object.
    pub const fn object_type(&self) -> &'static str {
        match self {
            Self::Ipv4(_) => "ipv4-addr",
            Self::Ipv6(_) => "ipv6-addr",
            Self::Domain(_) => "domain-name",
        }
    }

    pub const fn value(&self) -> &'a str {
        match self {
            Self::Ipv4(v) | Self::Ipv6(v) | Self::Domain(v) => v,
        }
    }

    const fn main_observable_type(&self) -> MainObservableType {
        match self {
            Self::Ipv4(_) => MainObservableType::Ipv4Addr,
            Self::Ipv6(_) => MainObservableType::Ipv6Addr,
            Self::Domain(_) => MainObservableType::DomainName,
        }
    }
}

/// One observation an indicator detects: the shapes Maltrail trails take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Observation<'a> {
    /// An IPv4 address or CIDR block: `[ipv4-addr:value = '1.2.3.4']`.
    Ipv4Addr(&'a str),
    /// An IPv6 address or CIDR block.
    Ipv6Addr(&'a str),
    /// A domain name: `[domain-name:value = 'evil.com']`.
    DomainName(&'a str),
    /// A URL, as a whole: `[url:value = 'http://host/path']`.
    Url(&'a str),
    /// Traffic to an address or host on one port.
    NetworkTraffic { destination: Destination<'a>, port: u16 },
    /// A URL matching a regular expression (the caller escapes what must be literal, see [`regex_escape`]).
    UrlMatches(&'a str),
    /// A domain name matching a regular expression.
    DomainMatches(&'a str),
}

impl Observation<'_> {
    /// The pattern text, e.g. `[domain-name:value = 'evil.com']`.
    pub fn pattern(&self) -> String {
        let mut out = String::with_capacity(64);
        // Writing into a String cannot fail.
        let _ = write!(out, "{self}");
        out
    }

    /// The main observable type OpenCTI shows for an indicator with this pattern.
    pub const fn main_observable_type(&self) -> MainObservableType {
        match self {
            Self::Ipv4Addr(_) => MainObservableType::Ipv4Addr,
            Self::Ipv6Addr(_) => MainObservableType::Ipv6Addr,
            Self::DomainName(_) | Self::DomainMatches(_) => MainObservableType::DomainName,
            Self::Url(_) | Self::UrlMatches(_) => MainObservableType::Url,
            Self::NetworkTraffic { destination, .. } => destination.main_observable_type(),
        }
    }
}

impl fmt::Display for Observation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, value) = match self {
            Self::Ipv4Addr(v) => ("ipv4-addr:value", v),
            Self::Ipv6Addr(v) => ("ipv6-addr:value", v),
            Self::DomainName(v) => ("domain-name:value", v),
            Self::Url(v) => ("url:value", v),
            Self::UrlMatches(regex) | Self::DomainMatches(regex) => {
                let path = if matches!(self, Self::UrlMatches(_)) { "url:value" } else { "domain-name:value" };
                write!(f, "[{path} MATCHES ")?;
                write_literal(f, regex)?;
                return f.write_char(']');
            }
            Self::NetworkTraffic { destination, port } => {
                f.write_str("[network-traffic:dst_ref.type = ")?;
                write_literal(f, destination.object_type())?;
                f.write_str(" AND network-traffic:dst_ref.value = ")?;
                write_literal(f, destination.value())?;
                return write!(f, " AND network-traffic:dst_port = {port}]");
            }
        };
        write!(f, "[{path} = ")?;
        write_literal(f, value)?;
        f.write_char(']')
    }
}

fn write_literal(out: &mut impl Write, text: &str) -> fmt::Result {
    out.write_char('\'')?;
    let mut rest = text;
    while let Some(at) = rest.find(['\\', '\'']) {
        out.write_str(&rest[..at])?;
        out.write_char('\\')?;
        out.write_str(&rest[at..=at])?;
        rest = &rest[at + 1..];
    }
    out.write_str(rest)?;
    out.write_char('\'')
}

/// `text` as a quoted STIX pattern string literal: `'` + text with `\` and `'` backslash-escaped + `'`.
pub fn string_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    let _ = write_literal(&mut out, text);
    out
}

/// Why a pattern's string literals cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiteralError {
    /// A literal opened and never closed.
    Unterminated { at: usize },
    /// A backslash followed by something other than `\` or `'`.
    BadEscape { at: usize },
}

impl fmt::Display for LiteralError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unterminated { at } => write!(f, "string literal opened at byte {at} is not closed"),
            Self::BadEscape { at } => write!(f, "invalid escape at byte {at} (only \\\\ and \\' are allowed)"),
        }
    }
}

impl std::error::Error for LiteralError {}

/// The values of every string literal in a pattern, unescaped, in order. The inverse of the escaping the builder
/// applies: used to read a value back out of a pattern.
pub fn string_literals(pattern: &str) -> Result<Vec<String>, LiteralError> {
    let mut literals = Vec::new();
    let mut chars = pattern.char_indices();
    while let Some((start, c)) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(LiteralError::Unterminated { at: start }),
                Some((_, '\'')) => break,
                Some((at, '\\')) => match chars.next() {
                    Some((_, e @ ('\\' | '\''))) => value.push(e),
                    _ => return Err(LiteralError::BadEscape { at }),
                },
                Some((_, c)) => value.push(c),
            }
        }
        literals.push(value);
    }
    Ok(literals)
}

/// `text` with every regular-expression metacharacter (`\ ^ $ . | ? * + ( ) [ ] { }`) backslash-escaped, so that
/// a regex matches it literally.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(c, '\\' | '^' | '$' | '.' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pattern_per_shape() {
        let cases = [
            (Observation::Ipv4Addr("1.2.3.4"), "[ipv4-addr:value = '1.2.3.4']"),
            (Observation::Ipv4Addr("5.63.151.0/24"), "[ipv4-addr:value = '5.63.151.0/24']"),
            (Observation::Ipv6Addr("fe80::1"), "[ipv6-addr:value = 'fe80::1']"),
            (Observation::DomainName("evil.com"), "[domain-name:value = 'evil.com']"),
            (Observation::Url("http://h/p?q='x'"), "[url:value = 'http://h/p?q=\\'x\\'']"),
            (
                Observation::NetworkTraffic { destination: Destination::Ipv4("1.2.3.4"), port: 443 },
                "[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '1.2.3.4' AND network-traffic:dst_port = 443]",
            ),
            (
                Observation::NetworkTraffic { destination: Destination::Domain("kuitrafes.ru"), port: 8080 },
                "[network-traffic:dst_ref.type = 'domain-name' AND network-traffic:dst_ref.value = 'kuitrafes.ru' AND network-traffic:dst_port = 8080]",
            ),
            (
                Observation::UrlMatches(&format!("^[a-z]+://[^/]+{}", regex_escape("/cmd.php?hwid="))),
                "[url:value MATCHES '^[a-z]+://[^/]+/cmd\\\\.php\\\\?hwid=']",
            ),
            (Observation::DomainMatches("seek[0-9]+\\.com"), "[domain-name:value MATCHES 'seek[0-9]+\\\\.com']"),
        ];
        for (observation, expected) in cases {
            assert_eq!(observation.pattern(), expected);
        }
    }

    #[test]
    fn main_observable_types() {
        let nt = Observation::NetworkTraffic { destination: Destination::Ipv6("::1"), port: 53 };
        assert_eq!(nt.main_observable_type().as_str(), "IPv6-Addr");
        assert_eq!(Observation::UrlMatches("x").main_observable_type().as_str(), "Url");
    }

    #[test]
    fn bad_literals_are_reported() {
        assert_eq!(string_literals("[a = 'x"), Err(LiteralError::Unterminated { at: 5 }));
        assert_eq!(string_literals("[a = 'x\\n']"), Err(LiteralError::BadEscape { at: 7 }));
        assert_eq!(string_literals("[a = 'x\\''] AND 'y'").unwrap(), vec!["x'", "y"]);
    }

    #[test]
    fn regex_escape_covers_metacharacters() {
        assert_eq!(
            regex_escape("/a.b?c=(d)[e]{f}|g*h+i^j$k\\"),
            "/a\\.b\\?c=\\(d\\)\\[e\\]\\{f\\}\\|g\\*h\\+i\\^j\\$k\\\\"
        );
    }
}
