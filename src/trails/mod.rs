//! The Maltrail static trail model: a trail file's category, family, aliases, reference blocks and entries, each
//! entry classified into one of the forms Maltrail uses, and every line that fits no form kept with its reason.
//!
//! Parsing never fails and never panics: bad input (invalid UTF-8, a huge line, an unknown form) becomes a
//! [`SkippedLine`] with file and line number, and the rest of the file goes on.

mod classify;
mod parse;

use std::fmt;

pub(crate) use classify::classify;
pub use parse::parse_file;

/// What a trail file's folder says about its trails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// `malware/<family>.txt`: infrastructure of one malware family.
    Malware,
    /// `malicious/<name>.txt`: malicious, but not one family.
    Malicious,
    /// `suspicious/<name>.txt`: suspicious (PUAs, anonymizers, ...).
    Suspicious,
    /// `mass_scanner*.txt`: known internet scanners.
    MassScanner,
}

impl Category {
    pub const ALL: [Category; 4] = [Self::Malware, Self::Malicious, Self::Suspicious, Self::MassScanner];

    /// The name used in labels, config and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malware => "malware",
            Self::Malicious => "malicious",
            Self::Suspicious => "suspicious",
            Self::MassScanner => "mass_scanner",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The category of a file from its path relative to `trails/static` (`malware/emotet.txt`,
    /// `mass_scanner.txt`); `None` for a path outside the known layout or not ending in `.txt`.
    pub(crate) fn of_path(path: &str) -> Option<Self> {
        let (folder, file) = match path.split_once('/') {
            Some((folder, file)) => (Some(folder), file),
            None => (None, path),
        };
        let stem = file.strip_suffix(".txt")?;
        if stem.is_empty() || file.contains('/') {
            return None;
        }
        match folder {
            Some("malware") => Some(Self::Malware),
            Some("malicious") => Some(Self::Malicious),
            Some("suspicious") => Some(Self::Suspicious),
            None if stem.starts_with("mass_scanner") => Some(Self::MassScanner),
            _ => None,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The form of a trail entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Form {
    /// `68.183.53.77`
    Ipv4,
    /// `162.255.119.0/24`
    Ipv4Cidr,
    /// `194.45.8.41:443`
    Ipv4Port,
    /// `2400:6180:0:d0::1008:2001`
    Ipv6,
    /// `2001:db8::/32`
    Ipv6Cidr,
    /// `[fe80::bdd9:fd11:ea3f:a4]:135`
    Ipv6Port,
    /// `eamdomai.com`, punycode and onion names included
    Domain,
    /// `kuitrafes.ru:8080`
    DomainPort,
    /// `seek[0-9]+\.(mootseek|zootseek)\.com`: a regular expression over domain names
    DomainRegex,
    /// `http://47.91.56.21/verify.php`: a URL with its scheme
    Url,
    /// `example.com/gate.php`: host and path, no scheme
    HostPath,
    /// `/cmd.php?hwid=`: a path on any host
    Path,
}

impl Form {
    pub const ALL: [Form; 12] = [
        Self::Ipv4,
        Self::Ipv4Cidr,
        Self::Ipv4Port,
        Self::Ipv6,
        Self::Ipv6Cidr,
        Self::Ipv6Port,
        Self::Domain,
        Self::DomainPort,
        Self::DomainRegex,
        Self::Url,
        Self::HostPath,
        Self::Path,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv4Cidr => "ipv4_cidr",
            Self::Ipv4Port => "ipv4_port",
            Self::Ipv6 => "ipv6",
            Self::Ipv6Cidr => "ipv6_cidr",
            Self::Ipv6Port => "ipv6_port",
            Self::Domain => "domain",
            Self::DomainPort => "domain_port",
            Self::DomainRegex => "domain_regex",
            Self::Url => "url",
            Self::HostPath => "host_path",
            Self::Path => "path",
        }
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// `.cc`: every domain under a TLD; too broad to be an indicator.
    TldOnly,
    /// `tk`, `orted`: one label, not a domain name.
    SingleLabel,
    /// `/`: a path that matches every URL.
    TooBroad,
    /// `18.197.239.109:66086`
    PortOutOfRange,
    /// `161.35.41.9:53:53`, `46.8.120.153::8080`: a port that is not one number
    MalformedPort,
    /// A domain label longer than 63 characters.
    LabelTooLong,
    /// An empty label (`a..b`) or a character a host name cannot hold.
    InvalidHost,
    /// Looks like an IP address (or CIDR block) but is not a valid one.
    InvalidAddress,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line is longer than [`MAX_LINE_BYTES`].
    LineTooLong,
}

impl SkipReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TldOnly => "tld_only",
            Self::SingleLabel => "single_label",
            Self::TooBroad => "too_broad",
            Self::PortOutOfRange => "port_out_of_range",
            Self::MalformedPort => "malformed_port",
            Self::LabelTooLong => "label_too_long",
            Self::InvalidHost => "invalid_host",
            Self::InvalidAddress => "invalid_address",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::LineTooLong => "line_too_long",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `# Reference:` line: the URL token made a valid URI, and whatever else the line said.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub url: String,
    pub note: Option<String>,
}

/// One trail: a classified entry line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number in the file.
    pub line: u32,
    /// The trail as written (inline comment removed, trimmed).
    pub text: String,
    /// The inline comment (`# was: ...`), if any.
    pub comment: Option<String>,
    /// Index of the reference block the entry belongs to, in [`TrailFile::blocks`].
    pub block: Option<usize>,
    pub form: Form,
    /// The value the pattern is about: the address or CIDR block (IPv6 without brackets), the domain name (dots
    /// around it removed), the regular expression, the URL (with a scheme, `http://` added to a host/path, made a
    /// valid URI), or the path.
    pub value: String,
    /// The port, for the `*_port` forms.
    pub port: Option<u16>,
}

/// A line that is not a trail and not a comment, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    pub line: u32,
    pub reason: SkipReason,
    /// The line as written (lossily decoded, cut to 200 characters) for the report.
    pub text: String,
}

/// A parsed trail file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailFile {
    /// Path relative to `trails/static`, e.g. `malware/icarus _ransomware.txt`.
    pub path: String,
    pub category: Category,
    /// The file name without `.txt`: the family for `malware/` files.
    pub stem: String,
    /// The names on the `# Aliases:` line, in order.
    pub aliases: Vec<String>,
    /// Reference blocks: consecutive `# Reference:` lines, in file order.
    pub blocks: Vec<Vec<Reference>>,
    pub entries: Vec<Entry>,
    pub skipped: Vec<SkippedLine>,
}

impl TrailFile {
    /// Logs every skipped line at debug level, with its file, line and reason.
    pub(crate) fn log_skipped(&self) {
        for skipped in &self.skipped {
            tracing::debug!(file = %self.path, line = skipped.line, reason = %skipped.reason, text = %skipped.text, "line skipped");
        }
    }
}
