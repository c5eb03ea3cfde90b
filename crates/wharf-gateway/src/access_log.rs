//! The access log (`--access-log`): one INFO line per request under the target
//! `wharf::access`, written in the request's server span (so it ends with the trace id the
//! client got in `X-Wharf-Trace-Id`) when the response is over: when its body has been sent,
//! when the client went away during it (a download cut off), or, if no response was made,
//! when the request was dropped.
//!
//! The line holds the route template, never the raw path or its query string, and no header:
//! a query or an `Authorization` header can carry a secret.

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use http_body::{Body as _, Frame, SizeHint};

/// Logged as the status when the request ended before any response was made (nginx's
/// "client closed request").
const CLIENT_CLOSED: u16 = 499;

/// What one access line says, gathered while the request runs; written exactly once.
#[derive(Debug)]
pub(crate) struct AccessRecord {
    span: tracing::Span,
    started: Instant,
    method: Method,
    route: Option<String>,
    client_ip: Option<IpAddr>,
    status: Option<StatusCode>,
    /// The body's length when known (`Content-Length`, or an exact size hint).
    length: Option<u64>,
    bytes: u64,
    written: bool,
}

impl AccessRecord {
    /// A request starting now, in `span` (held until the line is written).
    pub(crate) fn start(
        span: tracing::Span,
        method: Method,
        route: Option<String>,
        client_ip: Option<IpAddr>,
    ) -> AccessRecord {
        AccessRecord {
            span,
            started: Instant::now(),
            method,
            route,
            client_ip,
            status: None,
            length: None,
            bytes: 0,
            written: false,
        }
    }

    /// The response is made: its body is counted as it is sent, the line written when it
    /// ends.
    pub(crate) fn into_response(mut self, response: Response) -> Response {
        self.status = Some(response.status());
        self.length = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .or_else(|| response.body().size_hint().exact());
        response.map(|body| {
            Body::new(AccessLogBody {
                inner: body,
                record: self,
            })
        })
    }

    /// Writes the line, once; `complete` says whether the whole body was handed to the
    /// connection.
    fn write(&mut self, complete: bool) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        // Milliseconds, to the microsecond.
        let duration_ms = (self.started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let status = self.status.map_or(CLIENT_CLOSED, |status| status.as_u16());
        let client_ip = self
            .client_ip
            .map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        self.span.in_scope(|| {
            tracing::info!(
                target: "wharf::access",
                method = %self.method,
                route = self.route.as_deref().unwrap_or_default(),
                status,
                duration_ms,
                bytes = self.bytes,
                client_ip = %client_ip,
                complete,
                "request"
            );
        });
    }
}

impl Drop for AccessRecord {
    /// A request dropped before its response was made (the client went away).
    fn drop(&mut self) {
        self.write(false);
    }
}

/// A response body that counts the bytes it yields and writes the access line when it ends,
/// fails, or is dropped unfinished.
struct AccessLogBody {
    inner: Body,
    record: AccessRecord,
}

impl http_body::Body for AccessLogBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.record.bytes += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.record.write(true);
                }
            }
            Poll::Ready(None) => this.record.write(true),
            Poll::Ready(Some(Err(_))) => this.record.write(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AccessLogBody {
    /// The connection is done with the body: sent whole if nothing was left of it (the
    /// connection stops polling at the `Content-Length`, never polls an empty body, and sends
    /// no body for `HEAD`), otherwise the client went away.
    fn drop(&mut self) {
        let record = &self.record;
        let complete = self.inner.is_end_stream()
            || record.length == Some(record.bytes)
            || record.method == Method::HEAD;
        self.record.write(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// The access lines written while the guard lives, on this thread.
    struct Captured {
        log: wharf_telemetry::CapturedLog,
        _guard: tracing::subscriber::DefaultGuard,
    }

    impl Captured {
        fn install() -> Captured {
            let log = wharf_telemetry::CapturedLog::default();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(log.clone())
                .finish();
            Captured {
                log,
                _guard: tracing::subscriber::set_default(subscriber),
            }
        }

        fn lines(&self) -> Vec<String> {
            self.log
                .text()
                .lines()
                .filter(|line| line.contains("wharf::access"))
                .map(str::to_owned)
                .collect()
        }
    }

    fn record() -> AccessRecord {
        AccessRecord::start(
            tracing::info_span!("http.request"),
            Method::GET,
            Some("/packages/{*path}".to_owned()),
            Some(IpAddr::from([192, 0, 2, 1])),
        )
    }

    /// A streamed body of unknown length: two chunks of two bytes.
    fn streamed() -> Response {
        let chunks = [
            Ok::<_, std::io::Error>(Bytes::from_static(b"ab")),
            Ok(Bytes::from_static(b"cd")),
        ];
        Response::new(Body::from_stream(futures::stream::iter(chunks)))
    }

    #[tokio::test]
    async fn a_body_sent_whole_is_one_complete_line() {
        let captured = Captured::install();
        let body = record().into_response(streamed()).into_body();
        assert_eq!(body.collect().await.expect("body").to_bytes(), "abcd");
        let lines = captured.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        for field in [
            "method=GET",
            "route=\"/packages/{*path}\"",
            "status=200",
            "bytes=4",
            "client_ip=192.0.2.1",
            "complete=true",
        ] {
            assert!(lines[0].contains(field), "{field} missing: {}", lines[0]);
        }
    }

    #[tokio::test]
    async fn a_client_leaving_during_the_body_is_one_incomplete_line() {
        let captured = Captured::install();
        let mut body = record().into_response(streamed()).into_body();
        body.frame().await.expect("a frame").expect("data");
        drop(body);
        let lines = captured.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("bytes=2"), "{}", lines[0]);
        assert!(lines[0].contains("complete=false"), "{}", lines[0]);
    }

    #[tokio::test]
    async fn a_request_dropped_before_its_response_is_one_line_with_499() {
        let captured = Captured::install();
        drop(record());
        let lines = captured.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("status=499"), "{}", lines[0]);
        assert!(lines[0].contains("complete=false"), "{}", lines[0]);
    }

    #[tokio::test]
    async fn a_body_stopped_at_its_content_length_is_complete() {
        let captured = Captured::install();
        let mut response = streamed();
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, axum::http::HeaderValue::from_static("4"));
        let mut body = record().into_response(response).into_body();
        body.frame().await.expect("a frame").expect("data");
        body.frame().await.expect("a frame").expect("data");
        // The connection stops at the length, without polling for the end.
        drop(body);
        let lines = captured.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("complete=true"), "{}", lines[0]);
    }
}
