//! GitHub's REST routes and the download host: the JSON shapes, named and laid out as GitHub's.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};

use super::diff::{FileChange, FileStatus, diff_files, line_stats};
use super::model::{Commit, DEFAULT_BRANCH, EntryKind, FakeRepo, TreeEntry};
use super::server::{Media, Shared, error_json, gate, json_ok, lock, media, ok_body, raw_ok};
use super::tarball::ArchivePlan;

/// The router of one listener: the API (under the path prefix) when `api`, the download host when `downloads`.
pub(super) fn router(shared: Arc<Shared>, api: bool, downloads: bool) -> Router {
    let mut app = Router::new();
    if api {
        let routes = Router::new()
            .route("/rate_limit", get(get_rate_limit))
            .route("/repos/{owner}/{repo}", get(get_repository))
            .route("/repos/{owner}/{repo}/commits/{*reference}", get(get_commit))
            .route("/repos/{owner}/{repo}/git/trees/{*tree}", get(get_tree))
            .route("/repos/{owner}/{repo}/git/blobs/{sha}", get(get_blob))
            .route("/repos/{owner}/{repo}/contents", get(get_contents_root))
            .route("/repos/{owner}/{repo}/contents/{*path}", get(get_contents))
            .route("/repos/{owner}/{repo}/compare/{*basehead}", get(get_compare))
            .route("/repos/{owner}/{repo}/tarball", get(get_tarball_default))
            .route("/repos/{owner}/{repo}/tarball/{*reference}", get(get_tarball));
        let prefix = shared.options.api_path_prefix.as_str();
        app = if prefix.is_empty() { routes } else { Router::new().nest(prefix, routes) };
    }
    if downloads {
        app = app
            .route("/_codeload/{owner}/{repo}/legacy.tar.gz/{sha}", get(get_codeload))
            .route("/_raw/{owner}/{repo}/{reference}/{*path}", get(get_raw));
    }
    app.fallback(|| async { error_json(StatusCode::NOT_FOUND, "Not Found") })
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// GitHub wraps base64 content at 60 characters, each line ending in a newline.
fn base64_wrapped(content: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(content);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 60 + 1);
    for line in encoded.as_bytes().chunks(60) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out
}

/// Percent-encodes a repository path for use in a URL (keeps `/`).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Shared {
    fn links(&self, repo: &FakeRepo) -> Links {
        Links { api: self.api_base.clone(), download: self.download_base.clone(), full_name: repo.full_name() }
    }
}

/// The URLs GitHub puts in its answers, pointing back at the fake.
struct Links {
    api: String,
    download: String,
    full_name: String,
}

impl Links {
    fn repo(&self) -> String {
        format!("{}/repos/{}", self.api, self.full_name)
    }
    fn commit(&self, sha: &str) -> String {
        format!("{}/commits/{sha}", self.repo())
    }
    fn tree(&self, sha: &str) -> String {
        format!("{}/git/trees/{sha}", self.repo())
    }
    fn blob(&self, sha: &str) -> String {
        format!("{}/git/blobs/{sha}", self.repo())
    }
    fn contents(&self, path: &str, reference: &str) -> String {
        format!("{}/contents/{}?ref={reference}", self.repo(), encode_path(path))
    }
    fn raw(&self, reference: &str, path: &str) -> String {
        format!("{}/_raw/{}/{reference}/{}", self.download, self.full_name, encode_path(path))
    }
    fn html(&self, kind: &str, reference: &str, path: &str) -> String {
        format!("https://github.com/{}/{kind}/{reference}/{}", self.full_name, encode_path(path))
    }
}

fn commit_json(links: &Links, commit: &Commit) -> Value {
    let person = json!({"name": "Maltrail Fake", "email": "fake@example.invalid", "date": commit.date});
    json!({
        "sha": commit.sha,
        "url": links.commit(&commit.sha),
        "html_url": format!("https://github.com/{}/commit/{}", links.full_name, commit.sha),
        "commit": {
            "author": person,
            "committer": person,
            "message": commit.message,
            "tree": {"sha": commit.tree_sha, "url": links.tree(&commit.tree_sha)},
            "comment_count": 0,
        },
        "parents": commit.parents.iter().map(|p| json!({"sha": p, "url": links.commit(p)})).collect::<Vec<_>>(),
    })
}

/// GitHub's `files` entries for `changes` (at most `limit`), with line counts.
fn files_json(repo: &FakeRepo, links: &Links, changes: &[FileChange], base: &str, head: &str, limit: usize) -> Value {
    let content = |sha: &Option<String>| sha.as_deref().and_then(|s| repo.blob(s)).map(|c| &c[..]);
    let files: Vec<Value> = changes
        .iter()
        .take(limit)
        .map(|change| {
            let (additions, deletions) = line_stats(content(&change.old_sha), content(&change.new_sha));
            let at = if change.status == FileStatus::Removed { base } else { head };
            let mut file = json!({
                "sha": change.new_sha,
                "filename": change.filename,
                "status": change.status.as_str(),
                "additions": additions,
                "deletions": deletions,
                "changes": additions + deletions,
                "blob_url": links.html("blob", at, &change.filename),
                "raw_url": links.raw(at, &change.filename),
                "contents_url": links.contents(&change.filename, at),
            });
            if let Some(previous) = &change.previous_filename {
                file["previous_filename"] = json!(previous);
            }
            file
        })
        .collect();
    Value::Array(files)
}

fn tree_entry_json(links: &Links, path: &str, entry: &TreeEntry) -> Value {
    let mut value = json!({
        "path": path,
        "mode": entry.kind.api_mode(),
        "type": entry.kind.git_type(),
        "sha": entry.sha,
    });
    match entry.kind {
        EntryKind::Blob => {
            value["size"] = json!(entry.size);
            value["url"] = json!(links.blob(&entry.sha));
        }
        EntryKind::Tree => value["url"] = json!(links.tree(&entry.sha)),
    }
    value
}

async fn get_rate_limit(State(shared): State<Arc<Shared>>) -> Response {
    let rate = lock(&shared.rate).peek();
    let core = json!({
        "limit": rate.limit,
        "remaining": rate.limit.saturating_sub(rate.used),
        "reset": rate.reset,
        "used": rate.used,
        "resource": "core",
    });
    json_ok(&json!({"resources": {"core": core}, "rate": core}), None)
}

async fn get_repository(State(shared): State<Arc<Shared>>, Path((owner, name)): Path<(String, String)>) -> Response {
    let Some(repo) = shared.repo(&owner, &name) else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let links = shared.links(&repo);
    let value = json!({
        "id": 1,
        "name": repo.name(),
        "full_name": repo.full_name(),
        "owner": {"login": repo.owner()},
        "private": false,
        "default_branch": DEFAULT_BRANCH,
        "url": links.repo(),
        "html_url": format!("https://github.com/{}", repo.full_name()),
    });
    json_ok(&value, None)
}

async fn get_commit(
    State(shared): State<Arc<Shared>>,
    Path((owner, name, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(repo) = shared.repo(&owner, &name) else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(commit) = repo.resolve(&reference) else {
        return error_json(StatusCode::UNPROCESSABLE_ENTITY, &format!("No commit found for SHA: {reference}"));
    };
    if media(&headers) == Media::Sha {
        return ok_body(commit.sha.clone(), "application/vnd.github.sha; charset=utf-8", None);
    }
    let cached = lock(&shared.commit_bodies).get(&commit.sha).cloned();
    let body = cached.unwrap_or_else(|| {
        let links = shared.links(&repo);
        let parent_files =
            commit.parents.first().and_then(|p| repo.commit(p)).map(|p| p.files.clone()).unwrap_or_default();
        let changes = diff_files(&repo, &parent_files, &commit.files);
        let base = commit.parents.first().map_or("", String::as_str);
        let mut value = commit_json(&links, commit);
        value["files"] = files_json(&repo, &links, &changes, base, &commit.sha, shared.options.compare_file_limit);
        let body = Bytes::from(value.to_string());
        lock(&shared.commit_bodies).insert(commit.sha.clone(), body.clone());
        body
    });
    ok_body(body, "application/json; charset=utf-8", Some(&commit.sha))
}

async fn get_tree(
    State(shared): State<Arc<Shared>>,
    Path((owner, name, tree)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(repo) = shared.repo(&owner, &name) else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let sha = match repo.tree(&tree) {
        Some(_) => tree.clone(),
        None => match repo.resolve(&tree) {
            Some(commit) => commit.tree_sha.clone(),
            None => return error_json(StatusCode::NOT_FOUND, "Not Found"),
        },
    };
    // As documented: any value of `recursive` (even 0 or false) makes the listing recursive.
    let recursive = query.contains_key("recursive");
    let entries: Vec<(String, TreeEntry)> = if recursive {
        repo.walk_tree(&sha)
    } else {
        repo.tree(&sha).map(|t| t.iter().map(|e| (e.name.clone(), e.clone())).collect()).unwrap_or_default()
    };
    let links = shared.links(&repo);
    let limit = shared.options.tree_entry_limit;
    let value = json!({
        "sha": sha,
        "url": links.tree(&sha),
        "tree": entries.iter().take(limit).map(|(path, e)| tree_entry_json(&links, path, e)).collect::<Vec<_>>(),
        "truncated": entries.len() > limit,
    });
    json_ok(&value, Some(&format!("tree {sha} {recursive} {limit}")))
}

async fn get_blob(
    State(shared): State<Arc<Shared>>,
    Path((owner, name, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(repo) = shared.repo(&owner, &name) else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let sha = sha.to_ascii_lowercase();
    let Some(content) = repo.blob(&sha).cloned() else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let links = shared.links(&repo);
    drop(repo);
    if media(&headers) == Media::Raw {
        return raw_ok(content, &format!("raw {sha}"));
    }
    let value = json!({
        "sha": sha,
        "size": content.len(),
        "url": links.blob(&sha),
        "content": base64_wrapped(&content),
        "encoding": "base64",
    });
    json_ok(&value, Some(&format!("blob {sha}")))
}

async fn get_contents_root(
    state: State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
    query: Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    get_contents(state, Path((owner, name, String::new())), query, headers).await
}

async fn get_contents(
    State(shared): State<Arc<Shared>>,
    Path((owner, name, path)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(repo) = shared.repo(&owner, &name) else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let reference = query.get("ref").cloned().unwrap_or_else(|| DEFAULT_BRANCH.to_owned());
    let Some(commit) = repo.resolve(&reference) else {
        return error_json(StatusCode::NOT_FOUND, &format!("No commit found for the ref {reference}"));
    };
    let path = path.trim_matches('/').to_owned();
    let links = shared.links(&repo);
    if let Some(file) = commit.files.get(&path).cloned() {
        let content = repo.blob(&file.blob_sha).expect("stored").clone();
        drop(repo);
        if media(&headers) == Media::Raw {
            return raw_ok(content, &format!("raw {}", file.blob_sha));
        }
        // Over 1 MB GitHub answers the object without its content.
        let inline = content.len() <= shared.options.contents_inline_limit;
        let value = json!({
            "type": "file",
            "encoding": if inline { "base64" } else { "none" },
            "size": content.len(),
            "name": path.rsplit('/').next().unwrap_or_default(),
            "path": path,
            "content": if inline { base64_wrapped(&content) } else { String::new() },
            "sha": file.blob_sha,
            "url": links.contents(&path, &reference),
            "git_url": links.blob(&file.blob_sha),
            "html_url": links.html("blob", &reference, &path),
            "download_url": links.raw(&reference, &path),
        });
        return json_ok(&value, Some(&format!("contents {} {path} {reference} {inline}", file.blob_sha)));
    }
    let Some(tree_sha) = repo.dir_tree_sha(commit, &path) else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let entries = repo.tree(&tree_sha).cloned().unwrap_or_default();
    let listing: Vec<Value> = entries
        .iter()
        .take(shared.options.contents_dir_limit)
        .map(|entry| {
            let entry_path = if path.is_empty() { entry.name.clone() } else { format!("{path}/{}", entry.name) };
            let (kind, git_url, html, download) = match entry.kind {
                EntryKind::Blob => ("file", links.blob(&entry.sha), "blob", json!(links.raw(&reference, &entry_path))),
                EntryKind::Tree => ("dir", links.tree(&entry.sha), "tree", Value::Null),
            };
            json!({
                "type": kind,
                "size": entry.size,
                "name": entry.name,
                "path": entry_path,
                "sha": entry.sha,
                "url": links.contents(&entry_path, &reference),
                "git_url": git_url,
                "html_url": links.html(html, &reference, &entry_path),
                "download_url": download,
            })
        })
        .collect();
    let limit = shared.options.contents_dir_limit;
    json_ok(&Value::Array(listing), Some(&format!("dir {tree_sha} {reference} {limit}")))
}

async fn get_compare(
    State(shared): State<Arc<Shared>>,
    Path((owner, name, basehead)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(repo) = shared.repo(&owner, &name) else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some((base, head)) = basehead.split_once("...") else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let Ok(comparison) = repo.compare(base, head) else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let links = shared.links(&repo);
    let base_commit = repo.commit(&comparison.base).expect("resolved");
    let head_commit = repo.commit(&comparison.head).expect("resolved");
    let merge_base = repo.commit(&comparison.merge_base).expect("resolved");

    let number = |key: &str| query.get(key).and_then(|v| v.parse::<usize>().ok());
    let paged = query.contains_key("page") || query.contains_key("per_page");
    let ahead = &comparison.ahead;
    let (shown, with_files, next_page) = if paged {
        let per_page = number("per_page").unwrap_or(30).clamp(1, 100);
        let page = number("page").unwrap_or(1).max(1);
        let start = ((page - 1) * per_page).min(ahead.len());
        let end = (start + per_page).min(ahead.len());
        let next = (end < ahead.len()).then(|| (page + 1, per_page));
        (&ahead[start..end], page == 1, next)
    } else {
        // Without paging GitHub lists the last 250 commits.
        (&ahead[ahead.len().saturating_sub(shared.options.compare_commit_limit)..], true, None)
    };
    let mut value = json!({
        "url": format!("{}/compare/{basehead}", links.repo()),
        "html_url": format!("https://github.com/{}/compare/{basehead}", links.full_name),
        "base_commit": commit_json(&links, base_commit),
        "merge_base_commit": commit_json(&links, merge_base),
        "status": comparison.status,
        "ahead_by": ahead.len(),
        "behind_by": comparison.behind_by,
        "total_commits": ahead.len(),
        "commits": shown.iter().map(|sha| commit_json(&links, repo.commit(sha).expect("known"))).collect::<Vec<_>>(),
    });
    if with_files {
        let changes = diff_files(&repo, &merge_base.files, &head_commit.files);
        let limit = shared.options.compare_file_limit;
        value["files"] = files_json(&repo, &links, &changes, &merge_base.sha, &head_commit.sha, limit);
    }
    let mut response = json_ok(&value, None);
    if let Some((page, per_page)) = next_page {
        let next = format!("<{}/compare/{basehead}?page={page}&per_page={per_page}>; rel=\"next\"", links.repo());
        response.headers_mut().insert(header::LINK, HeaderValue::from_str(&next).expect("link header"));
    }
    response
}

async fn get_tarball_default(state: State<Arc<Shared>>, Path((owner, name)): Path<(String, String)>) -> Response {
    get_tarball(state, Path((owner, name, DEFAULT_BRANCH.to_owned()))).await
}

async fn get_tarball(
    State(shared): State<Arc<Shared>>,
    Path((owner, name, reference)): Path<(String, String, String)>,
) -> Response {
    let Some(repo) = shared.repo(&owner, &name) else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(commit) = repo.resolve(&reference) else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let location = format!("{}/_codeload/{}/legacy.tar.gz/{}", shared.download_base, repo.full_name(), commit.sha);
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn get_codeload(
    State(shared): State<Arc<Shared>>,
    Path((owner, name, sha)): Path<(String, String, String)>,
) -> Response {
    let plan = {
        let Some(repo) = shared.repo(&owner, &name) else {
            return error_json(StatusCode::NOT_FOUND, "Not Found");
        };
        if repo.commit(&sha).is_none() {
            return error_json(StatusCode::NOT_FOUND, "Not Found");
        }
        ArchivePlan::new(&repo, &sha)
    };
    let disposition = format!("attachment; filename={}", plan.file_name());
    let receiver = plan.stream(shared.options.tarball_gzip_level);
    let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), receiver))
    });
    let headers = [(header::CONTENT_TYPE, "application/x-gzip".to_owned()), (header::CONTENT_DISPOSITION, disposition)];
    (headers, Body::from_stream(chunks)).into_response()
}

async fn get_raw(
    State(shared): State<Arc<Shared>>,
    Path((owner, name, reference, path)): Path<(String, String, String, String)>,
) -> Response {
    let Some(repo) = shared.repo(&owner, &name) else {
        return error_json(StatusCode::NOT_FOUND, "Not Found");
    };
    let entry = repo.resolve(&reference).and_then(|commit| commit.files.get(&path)).cloned();
    match entry.and_then(|entry| Some((repo.blob(&entry.blob_sha)?.clone(), entry.blob_sha))) {
        Some((content, sha)) => raw_ok(content, &format!("raw {sha}")),
        None => (StatusCode::NOT_FOUND, "404: Not Found").into_response(),
    }
}
