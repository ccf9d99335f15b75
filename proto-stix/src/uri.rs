//! Making text a valid RFC 3986 URI, as STIX requires of `url` observable values and external reference URLs (the
//! OASIS validator checks both with the `uri` format).
//!
//! Characters a URI component cannot carry are percent-encoded as UTF-8 bytes; everything already valid is left
//! untouched, so a clean URL comes back borrowed and unchanged, and encoding twice changes nothing.

use std::borrow::Cow;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

/// `pchar` of RFC 3986 without `%` (handled apart): unreserved, sub-delims, `:` and `@`.
fn is_pchar(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Authority,
    Path,
    Query,
    Fragment,
}

fn allowed(part: Part, b: u8, bracketed_host: bool) -> bool {
    match part {
        Part::Authority => {
            is_unreserved(b)
                || is_sub_delim(b)
                || b == b':'
                || b == b'@'
                || (bracketed_host && matches!(b, b'[' | b']'))
        }
        Part::Path => is_pchar(b) || b == b'/',
        Part::Query | Part::Fragment => is_pchar(b) || matches!(b, b'/' | b'?'),
    }
}

fn is_hex(b: Option<&u8>) -> bool {
    b.is_some_and(u8::is_ascii_hexdigit)
}

/// `url` (which must start with a `scheme://`) with every character its component cannot hold percent-encoded:
/// spaces, non-ASCII, `"<>\^`{|}`, control characters, a `%` not followed by two hex digits, brackets outside an
/// IPv6 host, a `#` inside the fragment. Returns `None` when `url` has no valid `scheme://` prefix.
pub fn encode_url(url: &str) -> Option<Cow<'_, str>> {
    let (scheme, rest) = url.split_once("://")?;
    let mut scheme_bytes = scheme.bytes();
    if !scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        || !scheme_bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let bytes = rest.as_bytes();
    let bracketed_host = bytes.first() == Some(&b'[') && bytes.contains(&b']');
    let mut part = Part::Authority;
    let mut out: Option<Vec<u8>> = None;
    for (i, &b) in bytes.iter().enumerate() {
        let next_part = match (part, b) {
            (Part::Authority, b'/') => Some(Part::Path),
            (Part::Authority | Part::Path, b'?') => Some(Part::Query),
            (Part::Authority | Part::Path | Part::Query, b'#') => Some(Part::Fragment),
            _ => None,
        };
        let keep = if let Some(next) = next_part {
            part = next;
            true
        } else if b == b'%' {
            is_hex(bytes.get(i + 1)) && is_hex(bytes.get(i + 2))
        } else {
            allowed(part, b, bracketed_host)
        };
        match (&mut out, keep) {
            (Some(buf), true) => buf.push(b),
            (Some(buf), false) => buf.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
            (None, true) => {}
            (None, false) => {
                let mut buf = Vec::with_capacity(url.len() + 16);
                buf.extend_from_slice(scheme.as_bytes());
                buf.extend_from_slice(b"://");
                buf.extend_from_slice(&bytes[..i]);
                buf.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
                out = Some(buf);
            }
        }
    }
    Some(match out {
        None => Cow::Borrowed(url),
        // Every non-ASCII byte is encoded, so `buf` holds ASCII only and the conversion is lossless.
        Some(buf) => Cow::Owned(String::from_utf8_lossy(&buf).into_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_urls_are_borrowed() {
        for url in [
            "http://47.91.56.21/verify.php",
            "https://example.com/a/b?x=1&y=%20#frag/ment?",
            "http://[fe80::1]:8080/x",
            "http://webhook.site/#!/view/22e20640/",
            "ftp://user@host:21/file;type=a",
        ] {
            assert!(matches!(encode_url(url), Some(Cow::Borrowed(u)) if u == url), "{url}");
        }
    }

    #[test]
    fn invalid_characters_are_encoded() {
        let cases = [
            ("http://x/a b", "http://x/a%20b"),
            ("http://x/대", "http://x/%EB%8C%80"),
            ("https://a/ip/213.32.35.{49,1,51}/relations", "https://a/ip/213.32.35.%7B49,1,51%7D/relations"),
            ("http://x/100%", "http://x/100%25"),
            ("http://x/%zz", "http://x/%25zz"),
            ("http://x/a#b#c", "http://x/a#b%23c"),
            ("http://x/[a]", "http://x/%5Ba%5D"),
            ("http://x/p?q=\"<>\\^`|", "http://x/p?q=%22%3C%3E%5C%5E%60%7C"),
        ];
        for (input, expected) in cases {
            assert_eq!(encode_url(input).as_deref(), Some(expected), "{input}");
            // Idempotent.
            assert_eq!(encode_url(expected).as_deref(), Some(expected));
        }
    }

    #[test]
    fn needs_a_scheme() {
        assert_eq!(encode_url("example.com/a"), None);
        assert_eq!(encode_url("1http://x"), None);
        assert_eq!(encode_url("://x"), None);
    }
}
