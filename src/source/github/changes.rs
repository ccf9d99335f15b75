//! What changed between two commits: the trail files of both trees compared by blob sha, then the blobs that
//! differ, each distinct one fetched once, a few at a time. Two tree requests plus at most two blobs per changed
//! file, whatever the size of the repository (the compare API would stop at 300 files).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use serde::Deserialize;

use super::http::{Get, MEDIA_RAW};
use super::{GitHubSource, bad_answer, encode_path, is_object_id, parse_json};
use crate::source::{FileChange, Revision, SourceError};

/// Blobs fetched at once: enough to hide latency, few enough not to trip GitHub's secondary rate limit.
const BLOB_CONCURRENCY: usize = 4;

/// Trail path (relative to the trails folder) → blob sha.
type Listing = BTreeMap<String, String>;

/// See [`GitHubSource::changes`].
pub(super) async fn between(
    source: &GitHubSource,
    base: &str,
    head: &Revision,
) -> Result<Vec<FileChange>, SourceError> {
    if base == head.id {
        return Ok(Vec::new());
    }
    if !is_object_id(base) {
        return Err(SourceError::UnknownRevision(base.to_owned()));
    }
    let (old, new) = tokio::try_join!(listing(source, base, Side::Base), listing(source, &head.id, Side::Head))?;
    let planned = plan(&old, &new);
    let wanted: BTreeSet<&str> = planned.iter().flat_map(|c| [c.old, c.new]).flatten().collect();
    let blobs = fetch_blobs(source, wanted).await?;
    planned.into_iter().map(|change| change.with_contents(&blobs)).collect()
}

/// Which end of the comparison a request is for: an unknown base is expected (history rewritten, another
/// repository), an unknown head is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Base,
    Head,
}

/// A changed trail file, by blob sha.
#[derive(Debug, PartialEq, Eq)]
struct Planned<'a> {
    path: &'a str,
    old: Option<&'a str>,
    new: Option<&'a str>,
}

impl Planned<'_> {
    fn with_contents(self, blobs: &HashMap<String, Vec<u8>>) -> Result<FileChange, SourceError> {
        let content = |sha: Option<&str>| -> Result<Option<Vec<u8>>, SourceError> {
            sha.map(|sha| {
                blobs.get(sha).cloned().ok_or_else(|| SourceError::Other(format!("blob {sha} was not fetched")))
            })
            .transpose()
        };
        Ok(FileChange { path: self.path.to_owned(), old: content(self.old)?, new: content(self.new)? })
    }
}

/// How many trail files commit `commit` holds (one tree request), for progress reports.
pub(super) async fn count(source: &GitHubSource, commit: &str) -> Result<usize, SourceError> {
    Ok(listing(source, commit, Side::Head).await?.len())
}

/// The files added, removed or modified from `old` to `new`, by path (a rename is a removal and an addition).
fn plan<'a>(old: &'a Listing, new: &'a Listing) -> Vec<Planned<'a>> {
    let paths: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let (before, after) = (old.get(path).map(String::as_str), new.get(path).map(String::as_str));
            (before != after).then_some(Planned { path, old: before, new: after })
        })
        .collect()
}

/// The trail files of commit `commit` and their blob shas, from its recursive tree. When GitHub truncates that
/// tree (over 100,000 entries or 7 MB: far beyond Maltrail's 3,200), the trails folder's own tree is listed
/// instead, reached one level at a time; if even that is truncated, an error says so.
async fn listing(source: &GitHubSource, commit: &str, side: Side) -> Result<Listing, SourceError> {
    let root = tree(source, commit, true, side).await?;
    if !root.truncated {
        return collect(&root, &source.trails.prefix);
    }
    tracing::warn!(commit, "GitHub truncated the repository's tree: listing the trails folder's tree instead");
    let mut sha = commit.to_owned();
    for name in source.trails.prefix.split('/').filter(|name| !name.is_empty()) {
        let level = tree(source, &sha, false, side).await?;
        let Some(entry) = level.tree.iter().find(|e| e.path == name && e.kind == "tree") else {
            return Ok(Listing::new());
        };
        sha = entry.sha.clone();
    }
    let folder = tree(source, &sha, true, side).await?;
    if folder.truncated {
        return Err(SourceError::Other(format!(
            "GitHub's trees API truncated the trails folder {:?} of {commit}: it lists at most 100,000 entries (7 \
             MB); compare the commits with a full import instead",
            source.trails.prefix
        )));
    }
    collect(&folder, "")
}

/// GitHub's tree object, the parts the source reads.
#[derive(Deserialize)]
struct TreeJson {
    tree: Vec<TreeEntry>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct TreeEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    mode: String,
    sha: String,
}

/// Mode of a symbolic link: listed as a blob, but the tarball holds it as a link, so it is no trail file.
const SYMLINK_MODE: &str = "120000";

async fn tree(source: &GitHubSource, tree_ish: &str, recursive: bool, side: Side) -> Result<TreeJson, SourceError> {
    let query = if recursive { "?recursive=1" } else { "" };
    let path = format!("repos/{}/git/trees/{}{query}", source.repo_path, encode_path(tree_ish));
    let fetched = source.api.fetch(Get::json(&path)).await.map_err(|failure| {
        let unknown =
            matches!(failure.refused_status(), Some(StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY));
        if unknown && side == Side::Base {
            tracing::info!(base = tree_ish, "GitHub does not know the last synced commit");
            SourceError::UnknownRevision(tree_ish.to_owned())
        } else {
            failure.into_source_error(&path)
        }
    })?;
    parse_json(&path, &fetched.body)
}

/// The trail files of a tree listing whose paths start with `prefix`.
fn collect(tree: &TreeJson, prefix: &str) -> Result<Listing, SourceError> {
    let trails = super::TrailFilter::new(prefix);
    let mut listing = Listing::new();
    for entry in tree.tree.iter().filter(|e| e.kind == "blob" && e.mode != SYMLINK_MODE) {
        let Some(relative) = trails.relative(&entry.path) else { continue };
        if !is_object_id(&entry.sha) {
            return Err(SourceError::Other(format!("the tree entry {} has no valid sha: {:?}", entry.path, entry.sha)));
        }
        listing.insert(relative.to_owned(), entry.sha.to_ascii_lowercase());
    }
    Ok(listing)
}

/// The contents of blobs `shas`, [`BLOB_CONCURRENCY`] requests at a time.
async fn fetch_blobs(source: &GitHubSource, shas: BTreeSet<&str>) -> Result<HashMap<String, Vec<u8>>, SourceError> {
    // The futures are made up front, with concrete lifetimes: a `map` closure returning a borrowing future trips
    // the compiler's `Send` inference when the whole run is spawned.
    let fetches: Vec<_> = shas.into_iter().map(|sha| named_blob(source, sha.to_owned())).collect();
    futures_util::stream::iter(fetches).buffer_unordered(BLOB_CONCURRENCY).try_collect().await
}

async fn named_blob(source: &GitHubSource, sha: String) -> Result<(String, Vec<u8>), SourceError> {
    let content = blob(source, &sha).await?;
    Ok((sha, content))
}

/// One blob, asked for raw; a JSON answer (a server ignoring the raw media type) is decoded from base64.
pub(super) async fn blob(source: &GitHubSource, sha: &str) -> Result<Vec<u8>, SourceError> {
    let path = format!("repos/{}/git/blobs/{sha}", source.repo_path);
    let get = Get { accept: Some(MEDIA_RAW), ..Get::json(&path) };
    let fetched = source.api.fetch(get).await.map_err(|failure| failure.into_source_error(&path))?;
    let is_json = fetched.content_type.as_deref().is_some_and(|t| t.trim_start().starts_with("application/json"));
    if is_json { decode_blob_json(&path, &fetched.body) } else { Ok(fetched.body) }
}

#[derive(Deserialize)]
struct BlobJson {
    content: String,
    encoding: String,
}

/// GitHub's blob object: base64 wrapped at 60 columns (newlines to drop before decoding).
fn decode_blob_json(path: &str, body: &[u8]) -> Result<Vec<u8>, SourceError> {
    let blob: BlobJson = parse_json(path, body)?;
    match blob.encoding.as_str() {
        "base64" => {
            let compact: String = blob.content.split_ascii_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| bad_answer(path, format!("invalid base64 content: {e}")))
        }
        "utf-8" => Ok(blob.content.into_bytes()),
        other => Err(bad_answer(path, format!("unknown blob encoding {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(pairs: &[(&str, &str)]) -> Listing {
        pairs.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())).collect()
    }

    #[test]
    fn plans_added_removed_modified_and_renamed_files() {
        let old = listing(&[("a.txt", "1"), ("b.txt", "2"), ("c.txt", "3"), ("d.txt", "4")]);
        let new = listing(&[("a.txt", "1"), ("b.txt", "9"), ("e.txt", "4"), ("f.txt", "5")]);
        let planned = plan(&old, &new);
        let expected = [
            Planned { path: "b.txt", old: Some("2"), new: Some("9") },
            Planned { path: "c.txt", old: Some("3"), new: None },
            Planned { path: "d.txt", old: Some("4"), new: None },
            Planned { path: "e.txt", old: None, new: Some("4") },
            Planned { path: "f.txt", old: None, new: Some("5") },
        ];
        assert_eq!(planned, expected);
    }

    #[test]
    fn collects_trail_blobs_only() {
        let sha = "05647df579700343ee915a4661a7f865a568e4d9";
        let json = format!(
            r#"{{"tree":[
              {{"path":"trails/static","type":"tree","mode":"040000","sha":"{sha}"}},
              {{"path":"trails/static/malware/a.txt","type":"blob","mode":"100644","sha":"{sha}"}},
              {{"path":"trails/static/link.txt","type":"blob","mode":"120000","sha":"{sha}"}},
              {{"path":"trails/static/notes.md","type":"blob","mode":"100644","sha":"{sha}"}},
              {{"path":"README.md","type":"blob","mode":"100644","sha":"{sha}"}}
            ],"truncated":false}}"#
        );
        let tree: TreeJson = serde_json::from_str(&json).unwrap();
        assert_eq!(collect(&tree, "trails/static/").unwrap(), listing(&[("malware/a.txt", sha)]));
        let bad: TreeJson =
            serde_json::from_str(r#"{"tree":[{"path":"x.txt","type":"blob","sha":"../../x"}]}"#).unwrap();
        assert!(collect(&bad, "").is_err());
    }

    #[test]
    fn decodes_wrapped_base64_blobs() {
        let content = "1.2.3.4\nevil.example\n".repeat(10);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&content);
        let wrapped: Vec<&str> = encoded.as_bytes().chunks(60).map(|line| std::str::from_utf8(line).unwrap()).collect();
        let body = serde_json::json!({"content": wrapped.join("\n") + "\n", "encoding": "base64"}).to_string();
        assert_eq!(decode_blob_json("p", body.as_bytes()).unwrap(), content.as_bytes());
        assert!(decode_blob_json("p", br#"{"content":"","encoding":"rot13"}"#).is_err());
    }
}
