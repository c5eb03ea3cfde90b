//! `GET /packages/<b2 path>/<filename>[.metadata]`: distribution and PEP 658 metadata files,
//! streamed from the object store, with `ETag`, conditional GET and single `Range` requests.
//! Paths name their content (blake2b), so responses are immutable.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wharf_blob::{BlobStore, GetRange};
use wharf_core::refusal::Refusal;

use crate::Gateway;
use crate::response::{Api, refusal_response};
use crate::simple::not_found;

/// The strong entity tag of a stored file: its blake2b digest, read from the path.
fn entity_tag(path: &str) -> Option<String> {
    let mut segments = path.split('/');
    let (first, second, rest) = (segments.next()?, segments.next()?, segments.next()?);
    let _filename = segments.next()?;
    let suffix = if path.ends_with(".metadata") {
        ".metadata"
    } else {
        ""
    };
    Some(format!("\"{first}{second}{rest}{suffix}\""))
}

fn content_type(path: &str) -> &'static str {
    if path.ends_with(".metadata") {
        "text/plain; charset=utf-8"
    } else if path.ends_with(".whl") || path.ends_with(".zip") {
        "application/zip"
    } else if path.ends_with(".tar.gz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    }
}

/// A parsed single-range `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeRequest {
    /// `bytes=start-end` (end inclusive) or `bytes=start-`.
    From { start: u64, end: Option<u64> },
    /// `bytes=-length`.
    Suffix(u64),
}

/// Parses a `Range` header; anything but one byte range is ignored (served whole), as
/// RFC 9110 allows.
fn parse_range(value: &str) -> Option<RangeRequest> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        return end.parse().ok().map(RangeRequest::Suffix);
    }
    let start = start.parse().ok()?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    if end.is_some_and(|end| end < start) {
        return None;
    }
    Some(RangeRequest::From { start, end })
}

/// Resolves a range against the object size into a half-open byte range, or `None` when it
/// cannot be satisfied.
fn resolve_range(range: RangeRequest, size: u64) -> Option<std::ops::Range<u64>> {
    match range {
        RangeRequest::From { start, end } => {
            if start >= size {
                return None;
            }
            let end = end.map_or(size, |end| end.saturating_add(1).min(size));
            Some(start..end)
        }
        RangeRequest::Suffix(length) => {
            if length == 0 || size == 0 {
                return None;
            }
            Some(size.saturating_sub(length)..size)
        }
    }
}

fn storage_unavailable(error: &wharf_blob::BlobError) -> Response {
    tracing::error!(error = %error, "object store unavailable");
    refusal_response(Api::ReadText, &Refusal::unavailable("Storage"))
}

/// `GET /packages/…`.
pub(crate) async fn download(
    State(gateway): State<Gateway>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (Some(etag), Ok(key)) = (entity_tag(&path), BlobStore::package_key(&path)) else {
        return not_found();
    };
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok());
    if if_none_match.is_some_and(|tags| {
        tags.split(',')
            .any(|tag| tag.trim() == etag || tag.trim() == "*")
    }) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(value) = HeaderValue::from_str(&etag) {
            response.headers_mut().insert(header::ETAG, value);
        }
        return response;
    }

    let meta = match gateway.blobs.head(&key).await {
        Ok(Some(meta)) => meta,
        Ok(None) => return not_found(),
        Err(error) => return storage_unavailable(&error),
    };
    let size = meta.size;
    let requested = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_range);
    let range = match requested {
        Some(request) => match resolve_range(request, size) {
            Some(range) => Some(range),
            None => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return response;
            }
        },
        None => None,
    };
    let get_range = range.clone().map(GetRange::Bounded);
    let result = match gateway.blobs.get(&key, get_range).await {
        Ok(Some(result)) => result,
        Ok(None) => return not_found(),
        Err(error) => return storage_unavailable(&error),
    };
    let length = result.range.end - result.range.start;
    let body = Body::from_stream(wharf_blob::BlobStore::into_stream(result));
    let mut response = body.into_response();
    if let Some(range) = &range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(value) =
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response_headers.insert(header::ETAG, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_the_blake2_digest_from_the_path() {
        assert_eq!(
            entity_tag("ab/cd/ef01/demo-1.0.tar.gz").as_deref(),
            Some("\"abcdef01\"")
        );
        assert_eq!(
            entity_tag("ab/cd/ef01/demo-1.0-py3-none-any.whl.metadata").as_deref(),
            Some("\"abcdef01.metadata\"")
        );
        assert_eq!(entity_tag("ab/cd"), None);
    }

    #[test]
    fn ranges_parse_and_resolve() {
        assert_eq!(
            parse_range("bytes=0-99"),
            Some(RangeRequest::From {
                start: 0,
                end: Some(99)
            })
        );
        assert_eq!(
            parse_range("bytes=100-"),
            Some(RangeRequest::From {
                start: 100,
                end: None
            })
        );
        assert_eq!(parse_range("bytes=-10"), Some(RangeRequest::Suffix(10)));
        assert_eq!(parse_range("bytes=5-1"), None);
        assert_eq!(parse_range("bytes=0-1,4-5"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(
            resolve_range(
                RangeRequest::From {
                    start: 0,
                    end: Some(99)
                },
                50
            ),
            Some(0..50)
        );
        assert_eq!(
            resolve_range(
                RangeRequest::From {
                    start: 50,
                    end: None
                },
                50
            ),
            None
        );
        assert_eq!(resolve_range(RangeRequest::Suffix(10), 50), Some(40..50));
        assert_eq!(resolve_range(RangeRequest::Suffix(100), 50), Some(0..50));
        assert_eq!(resolve_range(RangeRequest::Suffix(0), 50), None);
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type("a/b/c/x-1.0-py3-none-any.whl"),
            "application/zip"
        );
        assert_eq!(content_type("a/b/c/x-1.0.tar.gz"), "application/gzip");
        assert_eq!(
            content_type("a/b/c/x-1.0-py3-none-any.whl.metadata"),
            "text/plain; charset=utf-8"
        );
    }
}
