//! Classifying one trail value (a line with its comment removed) into its [`Form`], or the reason it is not a
//! usable trail. The rules, in order:
//!
//! 1. `scheme://...` is a URL.
//! 2. `/...` is a path (`/` alone would match every URL: skipped).
//! 3. `[v6]`, `[v6]:port`, `[v6]/path` are bracketed IPv6.
//! 4. Anything else with a `/` is a CIDR block (`address/prefix`) or a host/path.
//! 5. A value holding regular-expression syntax is a domain regex.
//! 6. A value with `:` is IPv6, or host:port.
//! 7. Digits and dots are IPv4.
//! 8. The rest is a domain name, with the dots around it removed as Maltrail does.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use proto_stix::uri::encode_url;

use super::{Form, SkipReason};

/// A classified value: its form, the normalized value, and the port for the `*_port` forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified<'a> {
    pub form: Form,
    pub value: Cow<'a, str>,
    pub port: Option<u16>,
}

impl<'a> Classified<'a> {
    fn new(form: Form, value: impl Into<Cow<'a, str>>) -> Self {
        Self { form, value: value.into(), port: None }
    }
}

/// Classifies a trail value (non-empty, trimmed, inline comment removed).
pub(crate) fn classify(text: &str) -> Result<Classified<'_>, SkipReason> {
    if let Some((scheme, rest)) = text.split_once("://")
        && !scheme.is_empty()
    {
        return classify_url(text, rest);
    }
    if text.starts_with('/') {
        if text.trim_start_matches('/').is_empty() {
            return Err(SkipReason::TooBroad);
        }
        return Ok(Classified::new(Form::Path, text));
    }
    if let Some(classified) = classify_bracketed_ipv6(text) {
        return classified;
    }
    if let Some((host, path)) = text.split_once('/') {
        return classify_slash(text, host, path);
    }
    if is_regex(text) {
        return Ok(Classified::new(Form::DomainRegex, text));
    }
    if text.contains(':') {
        if text.parse::<Ipv6Addr>().is_ok() {
            return Ok(Classified::new(Form::Ipv6, text));
        }
        let (host, port) = split_port(text)?;
        return match host_kind(host)? {
            HostKind::Ipv4 => Ok(Classified { form: Form::Ipv4Port, value: host.into(), port: Some(port) }),
            HostKind::Domain(name) => Ok(Classified { form: Form::DomainPort, value: name.into(), port: Some(port) }),
        };
    }
    match host_kind(text)? {
        HostKind::Ipv4 => Ok(Classified::new(Form::Ipv4, text)),
        HostKind::Domain(name) => Ok(Classified::new(Form::Domain, name)),
    }
}

fn classify_url<'a>(text: &'a str, after_scheme: &str) -> Result<Classified<'a>, SkipReason> {
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(SkipReason::InvalidHost);
    }
    let url = encode_url(text).ok_or(SkipReason::InvalidHost)?;
    Ok(Classified::new(Form::Url, url))
}

fn classify_bracketed_ipv6(text: &str) -> Option<Result<Classified<'_>, SkipReason>> {
    let inner_and_rest = text.strip_prefix('[')?;
    let (inner, rest) = inner_and_rest.split_once(']')?;
    // `[a-z]{4}\.x\.ru` is a regex, not a bracketed address: leave it to the later rules.
    inner.parse::<Ipv6Addr>().ok()?;
    Some(if rest.is_empty() {
        Ok(Classified::new(Form::Ipv6, inner))
    } else if let Some(port) = rest.strip_prefix(':').filter(|p| !p.contains('/')) {
        parse_port(port).map(|port| Classified { form: Form::Ipv6Port, value: inner.into(), port: Some(port) })
    } else {
        host_path(text)
    })
}

fn classify_slash<'a>(text: &'a str, host: &str, path: &str) -> Result<Classified<'a>, SkipReason> {
    let prefix_digits = !path.is_empty() && path.bytes().all(|b| b.is_ascii_digit());
    if prefix_digits && is_ipv4_like(host) {
        return match (valid_ipv4(host), path.parse::<u8>()) {
            (true, Ok(prefix)) if prefix <= 32 => Ok(Classified::new(Form::Ipv4Cidr, text)),
            _ => Err(SkipReason::InvalidAddress),
        };
    }
    if prefix_digits && host.parse::<Ipv6Addr>().is_ok() {
        return match path.parse::<u8>() {
            Ok(prefix) if prefix <= 128 => Ok(Classified::new(Form::Ipv6Cidr, text)),
            _ => Err(SkipReason::InvalidAddress),
        };
    }
    if host.is_empty() {
        return Err(SkipReason::InvalidHost);
    }
    let bare_host = if host.contains(':') { split_port(host)?.0 } else { host };
    host_kind(bare_host)?;
    host_path(text)
}

fn host_path(text: &str) -> Result<Classified<'_>, SkipReason> {
    let url = format!("http://{text}");
    let encoded = encode_url(&url).map(Cow::into_owned).ok_or(SkipReason::InvalidHost)?;
    Ok(Classified::new(Form::HostPath, encoded))
}

/// Regular-expression syntax that no host name, address or port holds.
fn is_regex(text: &str) -> bool {
    text.contains(['\\', '[', ']', '(', ')', '{', '}', '|', '^', '$', '*', '+', '?'])
}

/// `host:port` split at the first `:`; the port must be one decimal number within 0..=65535.
fn split_port(text: &str) -> Result<(&str, u16), SkipReason> {
    let (host, port) = text.split_once(':').ok_or(SkipReason::MalformedPort)?;
    Ok((host, parse_port(port)?))
}

fn parse_port(port: &str) -> Result<u16, SkipReason> {
    if port.is_empty() || port.len() > 10 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SkipReason::MalformedPort);
    }
    port.parse::<u64>().ok().and_then(|p| u16::try_from(p).ok()).ok_or(SkipReason::PortOutOfRange)
}

enum HostKind<'a> {
    Ipv4,
    Domain(&'a str),
}

/// An IPv4 address, or a domain name (returned with the dots around it removed).
fn host_kind(text: &str) -> Result<HostKind<'_>, SkipReason> {
    if is_ipv4_like(text) {
        return if valid_ipv4(text) { Ok(HostKind::Ipv4) } else { Err(SkipReason::InvalidAddress) };
    }
    let name = text.trim_matches('.');
    if !name.contains('.') {
        return Err(if text.starts_with('.') { SkipReason::TldOnly } else { SkipReason::SingleLabel });
    }
    for label in name.split('.') {
        if label.is_empty() || !label.chars().all(is_host_char) {
            return Err(SkipReason::InvalidHost);
        }
        if label.chars().count() > 63 {
            return Err(SkipReason::LabelTooLong);
        }
    }
    Ok(HostKind::Domain(name))
}

/// Letters, digits, `-`, `_` (seen in real host names), and non-ASCII letters and digits (IDN labels).
fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || (!c.is_ascii() && c.is_alphanumeric())
}

fn is_ipv4_like(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') && text.bytes().any(|b| b == b'.')
}

/// Four dot-separated decimal octets, each 0..=255 written with at most three digits.
fn valid_ipv4(text: &str) -> bool {
    let mut parts = 0;
    for part in text.split('.') {
        parts += 1;
        if part.is_empty() || part.len() > 3 || part.parse::<u16>().map_or(true, |v| v > 255) {
            return false;
        }
    }
    parts == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> Result<(Form, String, Option<u16>), SkipReason> {
        classify(text).map(|c| (c.form, c.value.into_owned(), c.port))
    }

    fn ok(form_: Form, value: &str, port: Option<u16>) -> Result<(Form, String, Option<u16>), SkipReason> {
        Ok((form_, value.to_owned(), port))
    }

    #[test]
    fn every_form_seen_in_the_snapshot() {
        assert_eq!(form("eamdomai.com"), ok(Form::Domain, "eamdomai.com", None));
        assert_eq!(form("xn--eepass-vbb.info"), ok(Form::Domain, "xn--eepass-vbb.info", None));
        assert_eq!(form("abcdefghijklmnop.onion"), ok(Form::Domain, "abcdefghijklmnop.onion", None));
        assert_eq!(form(".cu.cc"), ok(Form::Domain, "cu.cc", None));
        assert_eq!(form("www.evil.com."), ok(Form::Domain, "www.evil.com", None));
        assert_eq!(form("194.45.8.41:443"), ok(Form::Ipv4Port, "194.45.8.41", Some(443)));
        assert_eq!(form("68.183.53.77"), ok(Form::Ipv4, "68.183.53.77", None));
        assert_eq!(form("162.255.119.0/24"), ok(Form::Ipv4Cidr, "162.255.119.0/24", None));
        assert_eq!(form("2400:6180:0:d0::1008:2001"), ok(Form::Ipv6, "2400:6180:0:d0::1008:2001", None));
        assert_eq!(form("2001:db8::/32"), ok(Form::Ipv6Cidr, "2001:db8::/32", None));
        assert_eq!(form("[fe80::bdd9:fd11:ea3f:a4]:135"), ok(Form::Ipv6Port, "fe80::bdd9:fd11:ea3f:a4", Some(135)));
        assert_eq!(form("[0:0:0:0:0:ffff:2d3e:c649]:53"), ok(Form::Ipv6Port, "0:0:0:0:0:ffff:2d3e:c649", Some(53)));
        assert_eq!(form("[::1]"), ok(Form::Ipv6, "::1", None));
        assert_eq!(form("kuitrafes.ru:8080"), ok(Form::DomainPort, "kuitrafes.ru", Some(8080)));
        assert_eq!(form("http://47.91.56.21/verify.php"), ok(Form::Url, "http://47.91.56.21/verify.php", None));
        assert_eq!(form("example.com/gate.php"), ok(Form::HostPath, "http://example.com/gate.php", None));
        assert_eq!(
            form("103.53.176.145:8080/ServiceDeskPlus/products.do"),
            ok(Form::HostPath, "http://103.53.176.145:8080/ServiceDeskPlus/products.do", None)
        );
        assert_eq!(form("webhook.site/#!/view/22e2/"), ok(Form::HostPath, "http://webhook.site/#!/view/22e2/", None));
        assert_eq!(form("[::1]:80/x y"), ok(Form::HostPath, "http://[::1]:80/x%20y", None));
        assert_eq!(form("/cmd.php?hwid="), ok(Form::Path, "/cmd.php?hwid=", None));
        assert_eq!(form("/CJ대한통운 택배V_10.3.33.apk"), ok(Form::Path, "/CJ대한통운 택배V_10.3.33.apk", None));
        assert_eq!(
            form("seek[0-9]+\\.(mootseek|zootseek)\\.com"),
            ok(Form::DomainRegex, "seek[0-9]+\\.(mootseek|zootseek)\\.com", None)
        );
        assert_eq!(form("[a-z]{1}\\.appjiagu\\.com"), ok(Form::DomainRegex, "[a-z]{1}\\.appjiagu\\.com", None));
        assert_eq!(form("пример.рф"), ok(Form::Domain, "пример.рф", None));
    }

    #[test]
    fn unusable_values_say_why() {
        assert_eq!(form(".cc"), Err(SkipReason::TldOnly));
        assert_eq!(form("tk"), Err(SkipReason::SingleLabel));
        assert_eq!(form("18.197.239.109:66086"), Err(SkipReason::PortOutOfRange));
        assert_eq!(form("[::1]:70000"), Err(SkipReason::PortOutOfRange));
        assert_eq!(form("161.35.41.9:53:53"), Err(SkipReason::MalformedPort));
        assert_eq!(form("46.8.120.153::8080"), Err(SkipReason::MalformedPort));
        assert_eq!(form("evil.com:"), Err(SkipReason::MalformedPort));
        assert_eq!(form(&format!("{}.com", "a".repeat(64))), Err(SkipReason::LabelTooLong));
        assert_eq!(form("support¬forum.org"), Err(SkipReason::InvalidHost));
        assert_eq!(form("a..b.com"), Err(SkipReason::InvalidHost));
        assert_eq!(form("300.1.2.3"), Err(SkipReason::InvalidAddress));
        assert_eq!(form("1.2.3"), Err(SkipReason::InvalidAddress));
        assert_eq!(form("1.2.3.4/33"), Err(SkipReason::InvalidAddress));
        assert_eq!(form("http:///x"), Err(SkipReason::InvalidHost));
        assert_eq!(form("1http://x"), Err(SkipReason::InvalidHost));
        assert_eq!(form("/"), Err(SkipReason::TooBroad));
        assert_eq!(form("//"), Err(SkipReason::TooBroad));
    }

    #[test]
    fn urls_are_made_valid_uris() {
        assert_eq!(form("http://x.com/a b"), ok(Form::Url, "http://x.com/a%20b", None));
        assert_eq!(form("x.com/p{1}"), ok(Form::HostPath, "http://x.com/p%7B1%7D", None));
    }
}
