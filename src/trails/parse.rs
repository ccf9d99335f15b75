//! Reading a trail file's bytes into a [`TrailFile`]: comments, aliases, reference blocks and classified entries.
//!
//! Line rules follow Maltrail's loader: lines are trimmed, `#` lines are comments, and an inline comment starts at a
//! `#` preceded by whitespace (`webhook.site/#!/view` keeps its `#`). One or more consecutive reference lines open a
//! block, and every entry until the next reference line belongs to it.

use proto_stix::uri::encode_url;

use super::{Category, Entry, Reference, SkipReason, SkippedLine, TrailFile, classify};

/// Longest line read as a trail; longer lines are skipped (the longest real one is under 600 bytes).
pub(crate) const MAX_LINE_BYTES: usize = 8192;

/// How much of a skipped line is kept for the report.
const REPORT_CHARS: usize = 200;

/// Parses a trail file given its path relative to `trails/static` and its bytes. Returns `None` when the path is
/// not a trail file of a known category (see [`Category::of_path`]).
pub fn parse_file(path: &str, content: &[u8]) -> Option<TrailFile> {
    let category = Category::of_path(path)?;
    let file_name = path.rsplit('/').next().unwrap_or(path);
    let stem = file_name.strip_suffix(".txt").unwrap_or(file_name).to_owned();
    let mut file = TrailFile {
        path: path.to_owned(),
        category,
        stem,
        aliases: Vec::new(),
        blocks: Vec::new(),
        entries: Vec::new(),
        skipped: Vec::new(),
    };
    let mut block: Option<usize> = None;
    let mut block_has_entries = false;

    for (index, raw) in content.split(|&b| b == b'\n').enumerate() {
        let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let skip = |reason| SkippedLine { line, reason, text: report_text(raw) };
        if raw.len() > MAX_LINE_BYTES {
            file.skipped.push(skip(SkipReason::LineTooLong));
            continue;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            file.skipped.push(skip(SkipReason::InvalidUtf8));
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if let Some(comment) = text.strip_prefix('#') {
            let comment = comment.trim_start_matches('#').trim();
            if let Some(aliases) = strip_label(comment, "aliases") {
                push_aliases(&mut file.aliases, aliases);
            } else if is_reference_line(comment) {
                if block.is_none() || block_has_entries {
                    file.blocks.push(Vec::new());
                    block = Some(file.blocks.len() - 1);
                    block_has_entries = false;
                }
                if let (Some(reference), Some(current)) = (parse_reference(comment), block) {
                    let refs = &mut file.blocks[current];
                    if !refs.iter().any(|r| r.url == reference.url) {
                        refs.push(reference);
                    }
                }
            }
            continue;
        }
        let (value, comment) = split_inline_comment(text);
        match classify(value) {
            Ok(classified) => {
                block_has_entries = true;
                file.entries.push(Entry {
                    line,
                    text: value.to_owned(),
                    comment: comment.map(str::to_owned),
                    block,
                    form: classified.form,
                    value: classified.value.into_owned(),
                    port: classified.port,
                });
            }
            Err(reason) => file.skipped.push(skip(reason)),
        }
    }
    Some(file)
}

fn report_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).chars().take(REPORT_CHARS).collect()
}

/// The text after `label:` when `comment` starts with it (any case).
fn strip_label<'a>(comment: &'a str, label: &str) -> Option<&'a str> {
    let head = comment.get(..label.len())?;
    let rest = comment[label.len()..].trim_start();
    (head.eq_ignore_ascii_case(label)).then_some(())?;
    rest.strip_prefix(':').map(str::trim)
}

fn push_aliases(aliases: &mut Vec<String>, list: &str) {
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !aliases.iter().any(|a| a == name) {
            aliases.push(name.to_owned());
        }
    }
}

/// `Reference: ...` and its typos (`Referecne:`, `ReferenceL https:...`): a first word starting with `ref`.
fn is_reference_line(comment: &str) -> bool {
    let word: String = comment.chars().take_while(char::is_ascii_alphabetic).collect();
    word.len() >= 3 && word[..3].eq_ignore_ascii_case("ref")
}

/// The URL of a reference line (made a valid URI, common typos repaired) and the rest of the line as a note.
/// `None` when the line names no URL (`# Reference:` alone, `# Reference: curl -vv`).
fn parse_reference(comment: &str) -> Option<Reference> {
    // Drop the label: everything up to the first `:` or space after the first word.
    let after_label =
        comment.trim_start_matches(|c: char| c.is_ascii_alphabetic()).trim_start_matches([':', ' ', '\t']);
    let (start, end, url) = if let Some(sep) = after_label.find("://") {
        // The scheme starts after the last character that is not a letter (which may be more than one byte: `“`).
        let start = after_label[..sep]
            .char_indices()
            .rfind(|(_, c)| !c.is_ascii_alphabetic())
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = after_label[sep..].find(char::is_whitespace).map_or(after_label.len(), |i| sep + i);
        let token = &after_label[start..end];
        let url = match token.split_once("://") {
            Some(("ttp", rest)) => format!("http://{rest}"),
            Some(("ttps", rest)) => format!("https://{rest}"),
            _ => token.to_owned(),
        };
        (start, end, url)
    } else {
        // A scheme-less `host/path` token, e.g. `virustotal.com/gui/file/...`.
        let (start, token) =
            after_label.split_whitespace().map(|t| (t.as_ptr() as usize - after_label.as_ptr() as usize, t)).find(
                |(_, t)| t.split('/').next().is_some_and(|h| h.contains('.') && !h.starts_with('.')) && t.contains('/'),
            )?;
        (start, start + token.len(), format!("https://{token}"))
    };
    let url = encode_url(&url)?.into_owned();
    let before = after_label[..start].trim().trim_start_matches('#').trim();
    let after = after_label[end..].trim();
    let note = [before, after].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ");
    Some(Reference { url, note: (!note.is_empty()).then_some(note) })
}

/// Splits `value   # comment` at the first `#` preceded by whitespace.
fn split_inline_comment(text: &str) -> (&str, Option<&str>) {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        if b == b'#' && bytes[i - 1].is_ascii_whitespace() {
            let comment = text[i + 1..].trim();
            return (text[..i].trim_end(), (!comment.is_empty()).then_some(comment));
        }
    }
    (text, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trails::Form;

    const EMOTET: &str = "# Copyright (c) 2014-2026 Maltrail developers (https://github.com/stamparm/maltrail/)
# See the file 'LICENSE' for copying permission

# Aliases: Emotet, Heodo, Geodo

# Reference: https://twitter.com/_lockhum/status/1221213324525867008
# Referecne: https://example.org/b?x={1,2} (# 2025-05-22)

66.210.228.178:443
dvr.petcp.com   # inline note

# Reference: ttps://blog.example.com/post
# Generic

webhook.site/#!/view/1/
.cc
# Reference:
1.2.3.4
";

    #[test]
    fn parses_a_real_shaped_file() {
        let file = parse_file("malware/emotet.txt", EMOTET.as_bytes()).unwrap();
        assert_eq!(file.category, Category::Malware);
        assert_eq!(file.stem, "emotet");
        assert_eq!(file.aliases, ["Emotet", "Heodo", "Geodo"]);
        assert_eq!(file.blocks.len(), 3);
        assert_eq!(file.blocks[0].len(), 2);
        assert_eq!(file.blocks[0][1].url, "https://example.org/b?x=%7B1,2%7D");
        assert_eq!(file.blocks[0][1].note.as_deref(), Some("(# 2025-05-22)"));
        assert_eq!(file.blocks[1][0].url, "https://blog.example.com/post");
        assert!(file.blocks[2].is_empty(), "a bare `# Reference:` still opens a block");

        let summary: Vec<_> = file.entries.iter().map(|e| (e.line, e.form, e.block, e.comment.as_deref())).collect();
        assert_eq!(
            summary,
            [
                (9, Form::Ipv4Port, Some(0), None),
                (10, Form::Domain, Some(0), Some("inline note")),
                (15, Form::HostPath, Some(1), None),
                (18, Form::Ipv4, Some(2), None),
            ]
        );
        assert_eq!(file.skipped, [SkippedLine { line: 16, reason: SkipReason::TldOnly, text: ".cc".into() }]);
    }

    #[test]
    fn bad_bytes_are_skipped_and_reported() {
        let mut content = b"evil.com\n\xff\xfe.com\n".to_vec();
        content.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES + 1));
        content.extend_from_slice(b"\r\ngood.org\r\n");
        let file = parse_file("suspicious/x y.txt", &content).unwrap();
        assert_eq!(file.stem, "x y");
        assert_eq!(file.entries.iter().map(|e| e.line).collect::<Vec<_>>(), [1, 4]);
        let reasons: Vec<_> = file.skipped.iter().map(|s| (s.line, s.reason)).collect();
        assert_eq!(reasons, [(2, SkipReason::InvalidUtf8), (3, SkipReason::LineTooLong)]);
        assert_eq!(file.skipped[1].text.chars().count(), REPORT_CHARS);
    }

    #[test]
    fn layout_decides_category() {
        assert_eq!(
            parse_file("mass_scanner_cidr.txt", b"5.63.151.0/24 # rapid7").unwrap().category,
            Category::MassScanner
        );
        assert!(parse_file("unknown/x.txt", b"").is_none());
        assert!(parse_file("malware/README.md", b"").is_none());
        assert!(parse_file("malware/deep/x.txt", b"").is_none());
    }

    #[test]
    fn reference_variants() {
        let url = |c: &str| parse_reference(c).map(|r| (r.url, r.note));
        assert_eq!(url("Reference:https://a.b/c"), Some(("https://a.b/c".into(), None)));
        assert_eq!(url("ReferenceL https://a.b/c"), Some(("https://a.b/c".into(), None)));
        assert_eq!(
            url("Reference: # Reference: https://a.b/c"),
            Some(("https://a.b/c".into(), Some("Reference:".into())))
        );
        assert_eq!(
            url("Reference: virustotal.com/gui/file/e6/detection"),
            Some(("https://virustotal.com/gui/file/e6/detection".into(), None))
        );
        assert_eq!(
            url("Reference: https://blog.alyac.co.kr/2500 (Korean)"),
            Some(("https://blog.alyac.co.kr/2500".into(), Some("(Korean)".into())))
        );
        assert_eq!(url("Reference: curl -vv"), None);
        assert_eq!(url("Reference:"), None);
        // Multi-byte characters right before the scheme (quotes, a no-break space, a full-width colon).
        assert_eq!(url("Reference: “https://a.b/c”"), Some(("https://a.b/c%E2%80%9D".into(), Some("“".into()))));
        assert_eq!(url("Reference:\u{a0}https://a.b/c"), Some(("https://a.b/c".into(), None)));
        assert_eq!(url("Reference：https://a.b/c"), Some(("https://a.b/c".into(), Some("：".into()))));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3_000))]

        /// Any bytes: no panic, and every line is either a comment, an entry or a skipped line.
        #[test]
        fn any_bytes_parse_without_panic(content in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let file = parse_file("malware/fuzz.txt", &content).expect("a malware path is a trail file");
            let lines = content.split(|b| *b == b'\n').count();
            proptest::prop_assert!(file.entries.len() + file.skipped.len() <= lines);
        }

        /// Text shaped like trail files (labels, schemes, brackets, ports, non-ASCII around them): no panic.
        #[test]
        fn trail_shaped_text_parses_without_panic(
            lines in proptest::collection::vec(
                "(# ?(Reference|Referecne|Aliases|ref)?[:：]? ?)?[“”\u{a0}é ]{0,2}(h?ttps?://)?[a-zé\\[\\]:./?=#%“”\u{a0} 0-9-]{0,40}",
                0..12,
            )
        ) {
            let content = lines.join("\n");
            let _ = parse_file("malicious/fuzz.txt", content.as_bytes());
        }
    }
}
