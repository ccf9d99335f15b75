//! The parser over the full real snapshot: every line is accounted for (blank, comment, trail or skipped with a
//! reason), nothing panics, and the per-form and per-category counts equal counts computed independently here.

mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use maltrail_connector::source::directory::{list_trail_files, read_trail_file};
use maltrail_connector::trails::{Category, Form, parse_file};
use support::snapshot::snapshot_dir;

/// An independent, deliberately different rendering of the form rules: standard-library address parsers and
/// plain string tests instead of the parser's hand-written checks. `None` for a line the connector must skip.
fn reference_form(value: &str) -> Option<&'static str> {
    let host_ok = |h: &str| {
        let name = h.trim_matches('.');
        name.contains('.')
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.chars().count() <= 63
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_')
            })
    };
    let numeric = |h: &str| h.chars().all(|c| c.is_ascii_digit() || c == '.');
    let port_ok =
        |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| n <= 65535);
    if let Some(i) = value.find("://") {
        return (i > 0
            && !value[i + 3..].starts_with(['/', '?', '#'])
            && value[..i].chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
        .then_some("url");
    }
    if value.starts_with('/') {
        return (!value.trim_start_matches('/').is_empty()).then_some("path");
    }
    if let Some(rest) = value.strip_prefix('[')
        && let Some((inner, after)) = rest.split_once(']')
        && inner.parse::<Ipv6Addr>().is_ok()
    {
        return match after {
            "" => Some("ipv6"),
            a if a.starts_with(':') && !a.contains('/') => port_ok(&a[1..]).then_some("ipv6_port"),
            _ => Some("host_path"),
        };
    }
    if let Some((host, suffix)) = value.split_once('/') {
        if suffix.chars().all(|c| c.is_ascii_digit())
            && !suffix.is_empty()
            && let Ok(prefix) = suffix.parse::<u32>()
        {
            if host.parse::<Ipv4Addr>().is_ok() || (numeric(host) && host.contains('.')) {
                return (host.parse::<Ipv4Addr>().is_ok() && prefix <= 32).then_some("ipv4_cidr");
            }
            if host.parse::<Ipv6Addr>().is_ok() {
                return (prefix <= 128).then_some("ipv6_cidr");
            }
        }
        let bare = match host.split_once(':') {
            Some((h, p)) if port_ok(p) => h,
            Some(_) => return None,
            None => host,
        };
        let ok = if numeric(bare) && bare.contains('.') { bare.parse::<Ipv4Addr>().is_ok() } else { host_ok(bare) };
        return ok.then_some("host_path");
    }
    if value.chars().any(|c| "\\[](){}|^$*+?".contains(c)) {
        return Some("domain_regex");
    }
    if value.contains(':') {
        if value.parse::<Ipv6Addr>().is_ok() {
            return Some("ipv6");
        }
        let (host, port) = value.split_once(':')?;
        if !port_ok(port) {
            return None;
        }
        if numeric(host) && host.contains('.') {
            return host.parse::<Ipv4Addr>().is_ok().then_some("ipv4_port");
        }
        return host_ok(host).then_some("domain_port");
    }
    if numeric(value) && value.contains('.') {
        return value.parse::<Ipv4Addr>().is_ok().then_some("ipv4");
    }
    host_ok(value).then_some("domain")
}

#[test]
fn full_snapshot_is_accounted_for_line_by_line() {
    let root = snapshot_dir();
    let files = list_trail_files(&root).expect("snapshot listing");
    assert_eq!(files.len(), 3113, "the snapshot has 3,113 trail files");

    let mut ours: BTreeMap<(Category, &'static str), u64> = BTreeMap::new();
    let mut reference: BTreeMap<(Category, &'static str), u64> = BTreeMap::new();
    let (mut comments, mut blanks, mut entries, mut skipped, mut lines) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for path in &files {
        let content = read_trail_file(&root, path).expect("readable");
        let file = parse_file(path, &content).unwrap_or_else(|| panic!("{path} is not recognised as a trail file"));
        // Partition: every line is exactly one of blank, comment, entry, skipped.
        let text = String::from_utf8_lossy(&content);
        let all: Vec<&str> = text.split('\n').collect();
        lines += all.len() as u64;
        let mut kinds = vec![None; all.len()];
        for entry in &file.entries {
            kinds[entry.line as usize - 1] = Some("entry");
            *ours.entry((file.category, entry.form.as_str())).or_default() += 1;
        }
        for skip in &file.skipped {
            assert!(kinds[skip.line as usize - 1].is_none(), "{path}:{} both entry and skipped", skip.line);
            kinds[skip.line as usize - 1] = Some("skipped");
        }
        for (index, line) in all.iter().enumerate() {
            let trimmed = line.trim();
            let expected = if trimmed.is_empty() {
                blanks += 1;
                None
            } else if trimmed.starts_with('#') {
                comments += 1;
                None
            } else {
                let value = match trimmed.find(" #").or_else(|| trimmed.find("\t#")) {
                    Some(at) => trimmed[..at].trim_end(),
                    None => trimmed,
                };
                if let Some(form) = reference_form(value) {
                    *reference.entry((file.category, form)).or_default() += 1;
                }
                Some(if reference_form(value).is_some() { "entry" } else { "skipped" })
            };
            assert_eq!(kinds[index], expected, "{path}:{} {line:?}", index + 1);
        }
        entries += file.entries.len() as u64;
        skipped += file.skipped.len() as u64;
    }
    assert_eq!(lines, blanks + comments + entries + skipped, "every line accounted for");
    assert_eq!(entries + skipped, 1_852_460, "non-comment lines of the snapshot");
    assert_eq!(ours, reference, "per-category, per-form counts");
    let forms: std::collections::BTreeSet<_> = ours.keys().map(|(_, f)| *f).collect();
    assert!(forms.len() >= 10, "forms seen: {forms:?}");
    assert!(Form::ALL.len() >= forms.len());
    assert_eq!(skipped, 75, "lines skipped in the snapshot (see the export summary for the reasons)");
}
