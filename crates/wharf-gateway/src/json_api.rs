//! `GET /pypi/<name>/json` and `/pypi/<name>/<version>/json`, in PyPI's key layout.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use wharf_core::name;
use wharf_core::refusal::Refusal;
use wharf_core::version::Version;
use wharf_index::{FileRecord, Project, Release};

use crate::Gateway;
use crate::response::{Api, moved_permanently, refusal_response};
use crate::simple::{add_api_headers, base_url, cacheable, file_url, links_vary, sort_files};

fn not_found() -> Response {
    let mut response = (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "message": "Not Found" })),
    )
        .into_response();
    add_api_headers(response.headers_mut(), 0);
    response
}

fn unavailable(error: &wharf_index::IndexError) -> Response {
    tracing::error!(error = %error, "index unavailable");
    refusal_response(Api::ReadJson, &Refusal::unavailable("The index"))
}

/// Everything the JSON API needs about a project.
struct ProjectData {
    project: Project,
    releases: Vec<Release>,
    files: Vec<FileRecord>,
    roles: Vec<(String, String)>,
}

async fn load(gateway: &Gateway, normalized: &str) -> Result<Option<ProjectData>, Response> {
    let index = &gateway.index;
    let project = match index.find_project(normalized).await {
        Ok(Some(project)) if project.status != "quarantined" => project,
        Ok(_) => return Ok(None),
        Err(error) => return Err(unavailable(&error)),
    };
    let releases = index
        .project_releases(&project.id)
        .await
        .map_err(|error| unavailable(&error))?;
    let mut files = index
        .project_files(&project.id)
        .await
        .map_err(|error| unavailable(&error))?;
    sort_files(&mut files);
    let roles = index
        .project_roles(&project.id)
        .await
        .map_err(|error| unavailable(&error))?;
    Ok(Some(ProjectData {
        project,
        releases,
        files,
        roles,
    }))
}

/// The release the project URL shows: non-yanked first, then final releases, then the
/// highest version (PyPI's rule).
fn latest_release(releases: &[Release]) -> Option<&Release> {
    releases.iter().max_by_key(|release| {
        (
            !release.yanked,
            !release.is_prerelease,
            Version::parse(&release.version).ok(),
        )
    })
}

fn file_json(base: &str, file: &FileRecord) -> Value {
    let upload_time = jiff::Timestamp::from_microsecond(file.upload_time).ok();
    json!({
        "comment_text": file.comment_text.clone().unwrap_or_default(),
        "core-metadata": file.metadata_sha256.as_ref().map_or(json!(false), |sha256| json!({ "sha256": sha256 })),
        "digests": {
            "blake2b_256": file.blake2_256_digest,
            "md5": file.md5_digest,
            "sha256": file.sha256_digest,
        },
        "downloads": -1,
        "filename": file.filename,
        "has_sig": false,
        "md5_digest": file.md5_digest,
        "packagetype": file.packagetype,
        "python_version": file.python_version,
        "requires_python": file.requires_python,
        "size": file.size,
        "upload_time": upload_time.map(|time| time.strftime("%Y-%m-%dT%H:%M:%S").to_string()),
        "upload_time_iso_8601": upload_time.map(|time| time.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        "url": file_url(base, file),
        "yanked": file.yanked,
        "yanked_reason": if file.yanked && !file.yanked_reason.is_empty() { json!(file.yanked_reason) } else { Value::Null },
    })
}

fn metadata_value(release: &Release) -> Map<String, Value> {
    match serde_json::from_str(&release.metadata) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn text(metadata: &Map<String, Value>, key: &str) -> Value {
    match metadata.get(key) {
        Some(Value::String(value)) => json!(value),
        _ => Value::Null,
    }
}

fn list(metadata: &Map<String, Value>, key: &str) -> Value {
    match metadata.get(key) {
        Some(Value::Array(values)) if !values.is_empty() => Value::Array(values.clone()),
        _ => Value::Null,
    }
}

fn project_urls(metadata: &Map<String, Value>) -> Value {
    let mut urls = Map::new();
    if let Some(Value::Array(entries)) = metadata.get("project_urls") {
        for entry in entries {
            if let Some((label, url)) = entry.as_str().and_then(|entry| entry.split_once(',')) {
                urls.insert(label.trim().to_owned(), json!(url.trim()));
            }
        }
    }
    if urls.is_empty() {
        Value::Null
    } else {
        Value::Object(urls)
    }
}

fn info_json(base: &str, project: &Project, release: &Release) -> Value {
    let metadata = metadata_value(release);
    let project_url = format!("{base}/project/{}/", project.normalized_name);
    json!({
        "author": text(&metadata, "author"),
        "author_email": text(&metadata, "author_email"),
        "bugtrack_url": null,
        "classifiers": metadata.get("classifiers").cloned().unwrap_or_else(|| json!([])),
        "description": text(&metadata, "description"),
        "description_content_type": text(&metadata, "description_content_type"),
        "docs_url": null,
        "download_url": text(&metadata, "download_url"),
        "downloads": { "last_day": -1, "last_month": -1, "last_week": -1 },
        "dynamic": list(&metadata, "dynamic"),
        "home_page": text(&metadata, "home_page"),
        "keywords": text(&metadata, "keywords"),
        "license": text(&metadata, "license"),
        "license_expression": text(&metadata, "license_expression"),
        "license_files": list(&metadata, "license_file"),
        "maintainer": text(&metadata, "maintainer"),
        "maintainer_email": text(&metadata, "maintainer_email"),
        "name": project.name,
        "package_url": project_url,
        "platform": list(&metadata, "platform"),
        "project_url": project_url,
        "project_urls": project_urls(&metadata),
        "provides_extra": list(&metadata, "provides_extra"),
        "release_url": format!("{base}/project/{}/{}/", project.normalized_name, release.version),
        "requires_dist": list(&metadata, "requires_dist"),
        "requires_python": release.requires_python,
        "summary": text(&metadata, "summary"),
        "version": release.version,
        "yanked": release.yanked,
        "yanked_reason": if release.yanked && !release.yanked_reason.is_empty() { json!(release.yanked_reason) } else { Value::Null },
    })
}

fn ownership_json(roles: &[(String, String)]) -> Value {
    let roles: Vec<_> = roles
        .iter()
        .map(|(role, user)| json!({ "role": role, "user": user }))
        .collect();
    json!({ "roles": roles, "organization": null })
}

fn render(
    gateway: &Gateway,
    uri: &Uri,
    headers: &HeaderMap,
    data: &ProjectData,
    release: &Release,
    include_releases: bool,
) -> Response {
    let base = base_url(gateway, uri, headers);
    let urls: Vec<_> = data
        .files
        .iter()
        .filter(|file| file.release_id == release.id)
        .map(|file| file_json(&base, file))
        .collect();
    let mut body = json!({
        "info": info_json(&base, &data.project, release),
        "last_serial": data.project.last_serial,
        "ownership": ownership_json(&data.roles),
        "urls": urls,
        "vulnerabilities": [],
    });
    if include_releases {
        let mut by_version: Vec<&Release> = data.releases.iter().collect();
        by_version.sort_by_key(|release| Version::parse(&release.version).ok());
        let mut ordered = Map::new();
        for release in by_version {
            let files: Vec<_> = data
                .files
                .iter()
                .filter(|file| file.release_id == release.id)
                .map(|file| file_json(&base, file))
                .collect();
            ordered.insert(release.version.clone(), Value::Array(files));
        }
        body["releases"] = Value::Object(ordered);
    }
    let mut response = cacheable(
        headers,
        "application/json",
        body.to_string(),
        data.project.last_serial,
    );
    // The body does not depend on `Accept`; its links may on the forwarded headers.
    match links_vary(gateway) {
        Some(vary) => {
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static(vary));
        }
        None => {
            response.headers_mut().remove(header::VARY);
        }
    }
    response
}

/// `GET /pypi/<name>/json`.
pub(crate) async fn project(
    State(gateway): State<Gateway>,
    Path(requested): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let normalized = name::normalize(&requested);
    if normalized != requested {
        return moved_permanently(&format!("/pypi/{normalized}/json"));
    }
    let data = match load(&gateway, &normalized).await {
        Ok(Some(data)) => data,
        Ok(None) => return not_found(),
        Err(response) => return response,
    };
    let Some(release) = latest_release(&data.releases) else {
        return not_found();
    };
    render(&gateway, &uri, &headers, &data, release, true)
}

/// `GET /pypi/<name>/<version>/json`.
pub(crate) async fn release(
    State(gateway): State<Gateway>,
    Path((requested, version)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let normalized = name::normalize(&requested);
    if normalized != requested {
        return moved_permanently(&format!("/pypi/{normalized}/{version}/json"));
    }
    let Ok(parsed) = Version::parse(&version) else {
        return not_found();
    };
    let canonical = parsed.canonical();
    let data = match load(&gateway, &normalized).await {
        Ok(Some(data)) => data,
        Ok(None) => return not_found(),
        Err(response) => return response,
    };
    // The exact version string wins over another spelling of the same canonical version.
    let release = data
        .releases
        .iter()
        .find(|release| release.version == version)
        .or_else(|| {
            data.releases
                .iter()
                .find(|release| release.canonical_version == canonical)
        });
    match release {
        Some(release) => render(&gateway, &uri, &headers, &data, release, false),
        None => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: &str, prerelease: bool, yanked: bool) -> Release {
        Release {
            id: version.into(),
            version: version.into(),
            canonical_version: version.into(),
            is_prerelease: prerelease,
            yanked,
            yanked_reason: String::new(),
            requires_python: None,
            metadata: "{}".into(),
            created_at: 0,
        }
    }

    #[test]
    fn latest_prefers_unyanked_final_then_highest() {
        let releases = vec![
            release("2.0", false, true),
            release("1.5", false, false),
            release("1.10", false, false),
            release("3.0a1", true, false),
        ];
        assert_eq!(
            latest_release(&releases).map(|release| release.version.as_str()),
            Some("1.10")
        );
    }

    #[test]
    fn project_urls_become_a_map() {
        let metadata = serde_json::from_str::<Map<String, Value>>(
            r#"{"project_urls": ["Homepage, https://example.com", "Source, https://example.com/src"]}"#,
        )
        .expect("json");
        assert_eq!(
            project_urls(&metadata),
            json!({ "Homepage": "https://example.com", "Source": "https://example.com/src" })
        );
    }
}
