//! The simple repository API: PEP 503 HTML and PEP 691 JSON, api-version 1.4.

use std::hash::{Hash, Hasher};

use axum::extract::{Path, Query, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use wharf_core::name;
use wharf_core::refusal::Refusal;
use wharf_core::version::Version;
use wharf_index::{FileRecord, Project};

use crate::Gateway;
use crate::negotiate::simple_format;
use crate::page_cache::CachedPage;
use crate::response::{Api, html_escape, moved_permanently, refusal_response};

pub(crate) const API_VERSION: &str = "1.4";
const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";

#[derive(Debug, Deserialize)]
pub(crate) struct FormatQuery {
    format: Option<String>,
}

/// The base URL absolute links are built from (issue #12, finding 11): the configured public
/// URL; else the authority the client asked for (the request URI's: HTTP/2's `:authority` or
/// an absolute-form HTTP/1 target; else `Host`) with this listener's scheme. A reverse
/// proxy's `X-Forwarded-Host` and `X-Forwarded-Proto` count only when the operator trusts it
/// (`trust_forwarded_headers`); otherwise any client could set them.
pub(crate) fn base_url(gateway: &Gateway, uri: &Uri, headers: &HeaderMap) -> String {
    let settings = &gateway.settings;
    if let Some(url) = &settings.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let forwarded = |name: &str| {
        settings
            .trust_forwarded_headers
            .then(|| last_entry(headers, name))
            .flatten()
    };
    let host = forwarded("x-forwarded-host")
        .or_else(|| {
            uri.authority()
                .map(|authority| authority.as_str().to_owned())
        })
        .or_else(|| {
            let host = headers.get(header::HOST)?.to_str().ok()?;
            Some(host.to_owned())
        })
        .filter(|host| !host.contains('@') && host.parse::<Authority>().is_ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let scheme = forwarded("x-forwarded-proto")
        .filter(|scheme| scheme == "https" || scheme == "http")
        .unwrap_or_else(|| settings.default_scheme.to_owned());
    format!("{scheme}://{host}")
}

/// The last entry of a comma-separated header: the one the nearest (trusted) proxy added.
fn last_entry(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let entry = value.rsplit(',').next()?.trim();
    (!entry.is_empty()).then(|| entry.to_owned())
}

/// The request headers absolute links were built from besides the URL, for `Vary`: the
/// forwarded headers when they are trusted, none otherwise (`Host` and `:authority` are part
/// of the URL every cache keys on; the page cache keys on the base URL itself).
pub(crate) fn links_vary(gateway: &Gateway) -> Option<&'static str> {
    (gateway.settings.public_url.is_none() && gateway.settings.trust_forwarded_headers)
        .then_some("X-Forwarded-Host, X-Forwarded-Proto")
}

/// Headers every simple and JSON API response carries (CORS, as PyPI sends them).
pub(crate) fn add_api_headers(headers: &mut HeaderMap, serial: i64) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "Content-Type, If-Match, If-Modified-Since, If-None-Match, If-Unmodified-Since",
        ),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("X-PyPI-Last-Serial"),
    );
    if let Ok(value) = HeaderValue::from_str(&serial.to_string()) {
        headers.insert("x-pypi-last-serial", value);
    }
}

/// A cacheable API response: 304 when the client's `If-None-Match` matches the body's tag.
pub(crate) fn cacheable(
    request_headers: &HeaderMap,
    content_type: &str,
    body: String,
    serial: i64,
) -> Response {
    let etag = etag_of(body.as_bytes(), content_type);
    revalidated(request_headers, content_type, body.into(), &etag, serial)
}

/// The entity tag of a body in a content type.
fn etag_of(body: &[u8], content_type: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    content_type.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

/// `body` tagged `etag`, or 304 when the client holds that tag already.
fn revalidated(
    request_headers: &HeaderMap,
    content_type: &str,
    body: bytes::Bytes,
    etag: &str,
    serial: i64,
) -> Response {
    let not_modified = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim().trim_start_matches("W/") == etag || tag.trim() == "*")
        });
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    // Revalidate every time: a fresh upload must be installable at once, and an unchanged
    // page costs only a 304.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=0, must-revalidate"),
    );
    add_api_headers(headers, serial);
    response
}

/// Serves the page `key` from the cache when it was rendered at `version`, else awaits
/// `render` (a future, so it does no work on a hit), keeps the page and serves it.
async fn cached_page(
    gateway: &Gateway,
    request_headers: &HeaderMap,
    key: (Option<String>, &'static str, String),
    version: (i64, String),
    render: impl Future<Output = Result<String, Response>>,
) -> Response {
    let serial = version.0;
    let content_type = key.1;
    if let Some(page) = gateway.pages.get(&key, &version) {
        gateway.metrics.simple_cache(true);
        return revalidated(
            request_headers,
            content_type,
            page.body.clone(),
            &page.etag,
            serial,
        );
    }
    gateway.metrics.simple_cache(false);
    let body = match render.await {
        Ok(body) => bytes::Bytes::from(body),
        Err(response) => return response,
    };
    let etag = etag_of(&body, content_type);
    let response = revalidated(request_headers, content_type, body.clone(), &etag, serial);
    gateway.pages.put(
        key,
        std::sync::Arc::new(CachedPage {
            version,
            body,
            etag,
        }),
    );
    response
}

fn unavailable(error: &wharf_index::IndexError) -> Response {
    tracing::error!(error = %error, "index unavailable");
    refusal_response(Api::ReadText, &Refusal::unavailable("The index"))
}

pub(crate) fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 Not Found").into_response()
}

/// `GET /simple/`.
pub(crate) async fn index_page(
    State(gateway): State<Gateway>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Response {
    gateway.metrics.simple_request("index");
    let serial = match gateway.index.max_serial().await {
        Ok(serial) => serial,
        Err(error) => return unavailable(&error),
    };
    let format = simple_format(headers.get(header::ACCEPT), query.format.as_deref());
    // Every change to the list (a new project, a status) appends to the journal, so the
    // serial versions the whole page.
    let key = (None, format, String::new());
    let version = (serial, String::new());
    let render = async {
        let projects = gateway
            .index
            .list_projects()
            .await
            .map_err(|error| unavailable(&error))?;
        Ok(render_index(&projects, format, serial))
    };
    cached_page(&gateway, &headers, key, version, render).await
}

fn render_index(projects: &[wharf_index::Project], format: &str, serial: i64) -> String {
    if format == JSON_TYPE {
        let projects: Vec<_> = projects
            .iter()
            .filter(|project| project.status != "quarantined")
            .map(|project| json!({ "name": project.name, "_last-serial": project.last_serial }))
            .collect();
        json!({
            "meta": { "api-version": API_VERSION, "_last-serial": serial },
            "projects": projects,
        })
        .to_string()
    } else {
        let mut html = format!(
            "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"{API_VERSION}\">\n    <title>Simple index</title>\n  </head>\n  <body>\n"
        );
        for project in projects
            .iter()
            .filter(|project| project.status != "quarantined")
        {
            html.push_str(&format!(
                "    <a href=\"/simple/{}/\">{}</a>\n",
                html_escape(&project.normalized_name),
                html_escape(&project.name)
            ));
        }
        html.push_str("  </body>\n</html>\n");
        html
    }
}

/// `GET /simple/<name>` (no slash): redirect to the canonical URL.
pub(crate) async fn project_page_without_slash(Path(project): Path<String>) -> Response {
    moved_permanently(&format!("/simple/{}/", name::normalize(&project)))
}

/// A project's files in the order PyPI lists them: by version, then filename.
pub(crate) fn sort_files(files: &mut [FileRecord]) {
    files.sort_by(|left, right| {
        let left_version = Version::parse(&left.version).ok();
        let right_version = Version::parse(&right.version).ok();
        left_version
            .cmp(&right_version)
            .then_with(|| left.filename.cmp(&right.filename))
    });
}

/// `GET /simple/<name>/`.
pub(crate) async fn project_page(
    State(gateway): State<Gateway>,
    Path(requested): Path<String>,
    Query(query): Query<FormatQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    gateway.metrics.simple_request("project");
    let normalized = name::normalize(&requested);
    if normalized != requested {
        let mut response = moved_permanently(&format!("/simple/{normalized}/"));
        add_api_headers(response.headers_mut(), 0);
        response.headers_mut().remove("x-pypi-last-serial");
        return response;
    }
    let project = match gateway.index.find_project(&normalized).await {
        Ok(Some(project)) if project.status != "quarantined" => project,
        Ok(_) => return not_found(),
        Err(error) => return unavailable(&error),
    };
    let base = base_url(&gateway, &uri, &headers);
    let format = simple_format(headers.get(header::ACCEPT), query.format.as_deref());
    let key = (Some(normalized), format, base.clone());
    let version = (project.last_serial, project.status.clone());
    let render = async {
        let mut files = gateway
            .index
            .project_files(&project.id)
            .await
            .map_err(|error| unavailable(&error))?;
        sort_files(&mut files);
        Ok(if format == JSON_TYPE {
            project_json(&project, &files, &base)
        } else {
            project_html(&project, &files, &base)
        })
    };
    let mut response = cached_page(&gateway, &headers, key, version, render).await;
    if links_vary(&gateway).is_some() {
        response.headers_mut().insert(
            header::VARY,
            HeaderValue::from_static("Accept, X-Forwarded-Host, X-Forwarded-Proto"),
        );
    }
    response
}

/// The URL of a stored file.
pub(crate) fn file_url(base: &str, file: &FileRecord) -> String {
    format!("{base}/packages/{}", file.path)
}

/// The `upload-time` format of PEP 700: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub(crate) fn upload_time_iso(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros)
        .map(|timestamp| timestamp.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

fn project_json(project: &Project, files: &[FileRecord], base: &str) -> String {
    let mut versions: Vec<&str> = files.iter().map(|file| file.version.as_str()).collect();
    versions.dedup();
    let files: Vec<_> = files
        .iter()
        .map(|file| {
            let core_metadata = match &file.metadata_sha256 {
                Some(sha256) => json!({ "sha256": sha256 }),
                None => json!(false),
            };
            let yanked = if !file.yanked {
                json!(false)
            } else if file.yanked_reason.is_empty() {
                json!(true)
            } else {
                json!(file.yanked_reason)
            };
            json!({
                "filename": file.filename,
                "url": file_url(base, file),
                "hashes": { "sha256": file.sha256_digest },
                "requires-python": file.requires_python,
                "size": file.size,
                "upload-time": upload_time_iso(file.upload_time),
                "yanked": yanked,
                "core-metadata": core_metadata,
                "data-dist-info-metadata": core_metadata,
                "provenance": null,
            })
        })
        .collect();
    json!({
        "meta": { "api-version": API_VERSION, "_last-serial": project.last_serial },
        "name": project.normalized_name,
        "project-status": { "status": project.status },
        "versions": versions,
        "files": files,
    })
    .to_string()
}

fn project_html(project: &Project, files: &[FileRecord], base: &str) -> String {
    let name = html_escape(&project.normalized_name);
    let mut html = format!(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"{API_VERSION}\">\n    <meta name=\"pypi:project-status\" content=\"{}\">\n    <title>Links for {name}</title>\n  </head>\n  <body>\n    <h1>Links for {name}</h1>\n",
        html_escape(&project.status)
    );
    for file in files {
        let mut attributes = String::new();
        if let Some(requires_python) = &file.requires_python {
            attributes.push_str(&format!(
                " data-requires-python=\"{}\"",
                html_escape(requires_python)
            ));
        }
        if file.yanked {
            attributes.push_str(&format!(
                " data-yanked=\"{}\"",
                html_escape(&file.yanked_reason)
            ));
        }
        if let Some(sha256) = &file.metadata_sha256 {
            attributes.push_str(&format!(
                " data-dist-info-metadata=\"sha256={sha256}\" data-core-metadata=\"sha256={sha256}\""
            ));
        }
        html.push_str(&format!(
            "    <a href=\"{}#sha256={}\"{attributes}>{}</a><br />\n",
            html_escape(&file_url(base, file)),
            file.sha256_digest,
            html_escape(&file.filename),
        ));
    }
    html.push_str(&format!(
        "  </body>\n</html>\n<!--SERIAL {}-->\n",
        project.last_serial
    ));
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(version: &str, filename: &str) -> FileRecord {
        FileRecord {
            id: "f".into(),
            release_id: "r".into(),
            version: version.into(),
            filename: filename.into(),
            packagetype: "bdist_wheel".into(),
            python_version: "py3".into(),
            size: 10,
            md5_digest: "m".into(),
            sha256_digest: "s".into(),
            blake2_256_digest: "b".into(),
            path: "ab/cd/ef/x".into(),
            upload_time: 1_700_000_000_123_456,
            comment_text: None,
            requires_python: Some(">=3.8".into()),
            metadata_sha256: Some("m256".into()),
            metadata_blake2_256: None,
            yanked: false,
            yanked_reason: String::new(),
            serial: 1,
        }
    }

    #[test]
    fn files_sort_by_pep440_version_then_filename() {
        let mut files = vec![
            file("1.10", "a-1.10.tar.gz"),
            file("1.9", "a-1.9.tar.gz"),
            file("1.9", "a-1.9-py3-none-any.whl"),
        ];
        sort_files(&mut files);
        let names: Vec<_> = files.iter().map(|file| file.filename.as_str()).collect();
        assert_eq!(
            names,
            ["a-1.9-py3-none-any.whl", "a-1.9.tar.gz", "a-1.10.tar.gz"]
        );
    }

    #[test]
    fn upload_time_has_microseconds_and_z() {
        assert_eq!(
            upload_time_iso(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
