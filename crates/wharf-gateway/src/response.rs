//! Error responses the way PyPI shapes them: the message in the HTTP reason phrase (twine
//! reads `response.reason`), and in a body negotiated on `Accept` (uv shows JSON `code`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::ext::ReasonPhrase;
use serde_json::{Value, json};
use wharf_core::refusal::{ErrorCode, Refusal};

use crate::negotiate::prefers_json;

/// Escapes text for HTML element content and attribute values.
pub(crate) fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A `301 Moved Permanently` to `location`, the status PyPI uses for its canonical-URL
/// redirects (axum's `Redirect::permanent` answers 308).
pub(crate) fn moved_permanently(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, value)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// The reason-phrase bytes of a message: ISO-8859-1, with anything else (and control
/// characters, which HTTP forbids there) replaced by `?`, as PyPI does.
fn reason_phrase_bytes(message: &str) -> Vec<u8> {
    message
        .chars()
        .map(|character| match u32::from(character) {
            code @ (0x20..=0x7e | 0xa0..=0xff) => code as u8,
            0x09 => b' ',
            _ => b'?',
        })
        .collect()
}

/// The public API a refusal answers: PyPI shapes each one's errors differently.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Api<'a> {
    /// The upload API (`/legacy/`, `/pypi`): the message in the reason phrase and in an HTML
    /// or JSON body negotiated on the request's `Accept`.
    Upload(&'a HeaderMap),
    /// Trusted publishing (`/_/oidc/…`): JSON, PyPI's `errors: [{code, description}]` for the
    /// mint-token codes and for rate limits.
    TrustedPublishing,
    /// The read side (simple pages, files): plain text.
    ReadText,
    /// The read side's JSON API: `{"message": …}`.
    ReadJson,
}

/// Turns a refusal into PyPI's response shape for `api`: the one place where a refusal's code
/// becomes an HTTP status, and where `Retry-After` is set.
pub(crate) fn refusal_response(api: Api<'_>, refusal: &Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.code.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = refusal.message.as_str();
    let mut response = match api {
        Api::Upload(request_headers) => upload_error(status, message, request_headers),
        Api::TrustedPublishing => {
            let body = if refusal.code.is_trusted_publishing() {
                json!({
                    "message": "Token request failed",
                    "errors": [{ "code": refusal.code.as_str(), "description": message }],
                })
            } else if refusal.code == ErrorCode::RateLimited {
                // Clients print `errors`: the limit's text goes there too.
                json!({
                    "message": message,
                    "errors": [{ "code": refusal.code.as_str(), "description": message }],
                })
            } else {
                json!({ "message": message })
            };
            (status, axum::Json(with_trace_id(body))).into_response()
        }
        Api::ReadText => (status, message.to_owned()).into_response(),
        Api::ReadJson => (status, axum::Json(json!({ "message": message }))).into_response(),
    };
    if let Some(seconds) = refusal.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Adds the current trace id to an error body, so an operator can find the request's trace.
fn with_trace_id(mut body: Value) -> Value {
    if let Some(trace_id) = wharf_telemetry::current_trace_id() {
        body["trace_id"] = Value::from(trace_id);
    }
    body
}

/// An upload API error: `status` with `message` as reason phrase and body.
fn upload_error(status: StatusCode, message: &str, request_headers: &HeaderMap) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let code = format!("{} {}", status.as_u16(), message);
    // The trace id lets an operator go from a failed client run to its trace.
    let trace_id = wharf_telemetry::current_trace_id();
    let mut response = if prefers_json(request_headers.get(header::ACCEPT)) {
        let mut body = json!({ "message": message, "code": code, "title": title });
        if let Some(trace_id) = &trace_id {
            body["trace_id"] = Value::from(trace_id.as_str());
        }
        (status, axum::Json(body)).into_response()
    } else {
        let trace_line = trace_id
            .map(|trace_id| format!("  <p>Trace ID: {}</p>\n", html_escape(&trace_id)))
            .unwrap_or_default();
        let body = format!(
            "<html>\n <head>\n  <title>{status_line}</title>\n </head>\n <body>\n  \
             <h1>{status_line}</h1>\n  {message}\n{trace_line} </body>\n</html>\n",
            status_line = html_escape(&format!("{} {}", status.as_u16(), title)),
            message = html_escape(message),
        );
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=UTF-8"),
        );
        response
    };
    if let Ok(reason) = ReasonPhrase::try_from(reason_phrase_bytes(message)) {
        response.extensions_mut().insert(reason);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_phrase_keeps_latin1_and_replaces_the_rest() {
        assert_eq!(
            reason_phrase_bytes("File already exists"),
            b"File already exists"
        );
        assert_eq!(reason_phrase_bytes("caf\u{e9}"), b"caf\xe9");
        assert_eq!(reason_phrase_bytes("snow \u{2603}\nman"), b"snow ??man");
    }

    #[test]
    fn html_escape_escapes_markup() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
        );
    }

    #[test]
    fn json_error_body_for_uv() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;q=0.9, text/plain;q=0.8, text/html;q=0.7"),
        );
        let response = refusal_response(
            Api::Upload(&headers),
            &Refusal::forbidden("Invalid API Token: token is expired"),
        );
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(HeaderValue::as_bytes),
            Some(&b"application/json"[..])
        );
        let reason = response
            .extensions()
            .get::<ReasonPhrase>()
            .expect("reason phrase");
        assert_eq!(reason.as_bytes(), b"Invalid API Token: token is expired");
    }
}
