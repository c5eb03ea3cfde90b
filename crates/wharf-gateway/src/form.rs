//! Reading the upload's `multipart/form-data` body, part by part, under limits.
//!
//! Every byte here comes from the client, so the reader bounds everything it holds: the
//! number of parts, the bytes of text fields, the bytes outside the file part (part headers
//! and boundaries, which the multipart parser buffers whole), and how long the client may
//! send nothing at all. The file part itself is streamed by the caller; its size limits are
//! the upload's (they need the project). Public so the fuzz targets drive the same code.

use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use wharf_core::refusal::{ErrorCode, Refusal};

/// The name of the part that carries the distribution.
pub const FILE_FIELD: &str = "content";
/// A detached signature part: accepted and ignored, as PyPI does since 2023.
const SIGNATURE_FIELD: &str = "gpg_signature";
/// Room for one part's boundary and headers, counted against the non-file budget.
const PART_OVERHEAD_BYTES: u64 = 1024;
/// Body chunks already pulled by the parser when the file part ends.
const CHUNK_SLACK_BYTES: u64 = 1024 * 1024;

/// How much of a form the reader accepts.
#[derive(Debug, Clone, Copy)]
pub struct FormLimits {
    /// Total bytes of text field values.
    pub max_text_bytes: usize,
    /// Parts in the whole form, file included.
    pub max_parts: usize,
    /// The longest the client may send no body bytes at all, and the window the minimum
    /// rate is measured over.
    pub idle_timeout: Duration,
    /// The fewest body bytes a second, over each `idle_timeout` (0: any byte will do).
    pub min_rate: u64,
}

/// Why the form could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// The Content-Type is not `multipart/form-data` with a boundary.
    #[error("Invalid request: the body must be multipart/form-data.")]
    NotMultipart,
    /// More parts than [`FormLimits::max_parts`].
    #[error("The upload form has too many fields (the limit is {0}).")]
    TooManyParts(usize),
    /// Text fields, part headers or boundaries over their budget.
    #[error("The upload form's fields are too large.")]
    TooLarge,
    /// A text field that is not UTF-8.
    #[error("'{0}' has invalid data: it is not UTF-8 text")]
    NotUtf8(String),
    /// A file part where text is expected (PyPI's words).
    #[error("{0}: Should not be a tuple.")]
    Tuple(String),
    /// No body bytes for [`FormLimits::idle_timeout`].
    #[error("Request timeout: no data received for {} seconds.", .0.as_secs())]
    IdleTimeout(Duration),
    /// Fewer body bytes than [`FormLimits::min_rate`] asks for in one window.
    #[error(
        "Request timeout: the upload is too slow (under {rate} bytes a second for {} seconds).",
        .window.as_secs()
    )]
    TooSlow {
        /// The minimum rate, in bytes a second.
        rate: u64,
        /// The window it was measured over.
        window: Duration,
    },
    /// The body ended or failed before the form was complete (the client went away).
    #[error("Invalid multipart form: the request body was cut off.")]
    Interrupted,
    /// The bytes are not a well-formed multipart body.
    #[error("Invalid multipart form: {0}")]
    Malformed(#[source] multer::Error),
}

impl FormError {
    /// The kind of refusal: a client that stopped sending timed out, anything else is a bad
    /// request.
    pub fn code(&self) -> ErrorCode {
        match self {
            FormError::IdleTimeout(_) | FormError::TooSlow { .. } => ErrorCode::RequestTimeout,
            _ => ErrorCode::InvalidRequest,
        }
    }
}

impl From<FormError> for Refusal {
    fn from(error: FormError) -> Refusal {
        Refusal::new(error.code(), error.to_string())
    }
}

/// Why the body stream was cut by the guard (travels through the parser as its stream error).
#[derive(Debug, thiserror::Error)]
enum GuardFault {
    #[error("no body bytes within the idle timeout")]
    Idle(Duration),
    #[error("the body arrives below the minimum rate")]
    Slow(u64, Duration),
    #[error("too many bytes outside the file part")]
    Overhead,
    #[error("the request body failed: {0}")]
    Body(Box<dyn StdError + Send + Sync>),
}

/// What the body guard and the reader share.
#[derive(Debug, Default)]
struct Budget {
    /// Bytes received while no file part was open.
    outside_file: AtomicU64,
    /// A file part is being read: its bytes are the caller's to limit.
    file_open: AtomicBool,
}

/// One part of the form.
#[derive(Debug)]
pub enum FormPart {
    /// A text field.
    Text {
        /// The field name.
        name: String,
        /// The field value.
        value: String,
    },
    /// The distribution file; read it with [`FormReader::file_chunk`] before the next part.
    File(Box<multer::Field<'static>>),
    /// A detached signature (ignored).
    Signature,
}

/// Reads an upload form part by part.
#[derive(Debug)]
pub struct FormReader {
    multipart: multer::Multipart<'static>,
    limits: FormLimits,
    budget: Arc<Budget>,
    parts: usize,
    text_bytes: usize,
}

impl FormReader {
    /// A reader over `body`, a stream of chunks, for a request of `content_type`.
    pub fn new<S, E>(body: S, content_type: &str, limits: FormLimits) -> Result<Self, FormError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let boundary = multer::parse_boundary(content_type).map_err(|_| FormError::NotMultipart)?;
        let budget = Arc::new(Budget::default());
        let outside_limit = (limits.max_text_bytes as u64)
            .saturating_add((limits.max_parts as u64).saturating_mul(PART_OVERHEAD_BYTES))
            .saturating_add(CHUNK_SLACK_BYTES);
        let guarded = guard(body, Arc::clone(&budget), outside_limit, limits);
        Ok(FormReader {
            multipart: multer::Multipart::new(guarded, boundary),
            limits,
            budget,
            parts: 0,
            text_bytes: 0,
        })
    }

    /// The next part, or `None` at the end of the form.
    pub async fn next_part(&mut self) -> Result<Option<FormPart>, FormError> {
        self.budget.file_open.store(false, Ordering::Relaxed);
        let Some(mut field) = self.multipart.next_field().await.map_err(form_error)? else {
            return Ok(None);
        };
        self.parts += 1;
        if self.parts > self.limits.max_parts {
            return Err(FormError::TooManyParts(self.limits.max_parts));
        }
        let name = field.name().unwrap_or_default().to_owned();
        if name == FILE_FIELD {
            self.budget.file_open.store(true, Ordering::Relaxed);
            return Ok(Some(FormPart::File(Box::new(field))));
        }
        if field.file_name().is_some() && name != SIGNATURE_FIELD {
            return Err(FormError::Tuple(name));
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(form_error)? {
            self.text_bytes += chunk.len();
            if self.text_bytes > self.limits.max_text_bytes {
                return Err(FormError::TooLarge);
            }
            value.extend_from_slice(&chunk);
        }
        if name == SIGNATURE_FIELD {
            return Ok(Some(FormPart::Signature));
        }
        let value = String::from_utf8(value).map_err(|_| FormError::NotUtf8(name.clone()))?;
        Ok(Some(FormPart::Text { name, value }))
    }

    /// The next chunk of the file part, or `None` at its end.
    pub async fn file_chunk(
        field: &mut multer::Field<'static>,
    ) -> Result<Option<Bytes>, FormError> {
        field.chunk().await.map_err(form_error)
    }
}

/// The minimum rate's bookkeeping: the bytes still owed in the current window, and when it
/// ends. A window whose bytes all arrived starts the next one.
#[derive(Debug, Clone, Copy)]
struct Pace {
    window: Duration,
    per_window: u64,
    owed: u64,
    deadline: tokio::time::Instant,
}

impl Pace {
    fn new(limits: FormLimits) -> Pace {
        let window = limits.idle_timeout;
        let per_window = ((limits.min_rate as f64 * window.as_secs_f64()) as u64).max(1);
        Pace {
            window,
            per_window,
            owed: per_window,
            deadline: tokio::time::Instant::now() + window,
        }
    }

    fn received(&mut self, bytes: usize) {
        self.owed = self.owed.saturating_sub(bytes as u64);
        if self.owed == 0 {
            self.owed = self.per_window;
            self.deadline = tokio::time::Instant::now() + self.window;
        }
    }

    /// The fault when a window ends with bytes still owed.
    fn fault(&self, min_rate: u64) -> GuardFault {
        if self.owed == self.per_window {
            GuardFault::Idle(self.window)
        } else {
            GuardFault::Slow(min_rate, self.window)
        }
    }
}

/// Wraps the body: fails it when a window of `limits.idle_timeout` brings fewer bytes than
/// the minimum rate asks for (none at all: idle), or once the bytes received outside the
/// file part exceed `outside_limit` (the parser would buffer them all).
fn guard<S, E>(
    body: S,
    budget: Arc<Budget>,
    outside_limit: u64,
    limits: FormLimits,
) -> impl Stream<Item = Result<Bytes, GuardFault>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    futures::stream::unfold(Some((body, Pace::new(limits))), move |state| {
        let budget = Arc::clone(&budget);
        async move {
            let (mut body, mut pace) = state?;
            let item = match tokio::time::timeout_at(pace.deadline, body.next()).await {
                Err(_) => Err(pace.fault(limits.min_rate)),
                Ok(None) => return None,
                Ok(Some(Err(error))) => Err(GuardFault::Body(error.into())),
                Ok(Some(Ok(chunk))) => {
                    pace.received(chunk.len());
                    if budget.file_open.load(Ordering::Relaxed) {
                        Ok(chunk)
                    } else {
                        let outside = budget
                            .outside_file
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed)
                            + chunk.len() as u64;
                        if outside > outside_limit {
                            Err(GuardFault::Overhead)
                        } else {
                            Ok(chunk)
                        }
                    }
                }
            };
            // After a fault the stream ends: nothing more is read from the client.
            let next = item.is_ok().then_some((body, pace));
            Some((item, next))
        }
    })
}

/// Maps the parser's error, recovering the guard's fault from a failed stream read.
fn form_error(error: multer::Error) -> FormError {
    if let multer::Error::StreamReadFailed(inner) = &error {
        return match inner.downcast_ref::<GuardFault>() {
            Some(GuardFault::Idle(idle)) => FormError::IdleTimeout(*idle),
            Some(GuardFault::Slow(rate, window)) => FormError::TooSlow {
                rate: *rate,
                window: *window,
            },
            Some(GuardFault::Overhead) => FormError::TooLarge,
            Some(GuardFault::Body(_)) | None => FormError::Interrupted,
        };
    }
    if matches!(
        error,
        multer::Error::IncompleteStream
            | multer::Error::IncompleteHeaders
            | multer::Error::IncompleteFieldData { .. }
    ) {
        return FormError::Interrupted;
    }
    FormError::Malformed(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    const BOUNDARY: &str = "b0undary";
    const CONTENT_TYPE: &str = "multipart/form-data; boundary=b0undary";
    const LIMITS: FormLimits = FormLimits {
        max_text_bytes: 1024,
        max_parts: 4,
        idle_timeout: Duration::from_secs(30),
        min_rate: 0,
    };

    fn part(name: &str, value: &[u8]) -> Vec<u8> {
        let mut bytes =
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .into_bytes();
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
        bytes
    }

    fn body(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = parts.concat();
        bytes.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        bytes
    }

    fn reader(bytes: Vec<u8>, limits: FormLimits) -> FormReader {
        let chunks: Vec<Result<Bytes, Infallible>> = bytes
            .chunks(7)
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
            .collect();
        FormReader::new(futures::stream::iter(chunks), CONTENT_TYPE, limits).expect("multipart")
    }

    async fn read_all(mut reader: FormReader) -> Result<Vec<(String, String)>, FormError> {
        let mut fields = Vec::new();
        while let Some(part) = reader.next_part().await? {
            match part {
                FormPart::Text { name, value } => fields.push((name, value)),
                FormPart::File(mut field) => {
                    while FormReader::file_chunk(&mut field).await?.is_some() {}
                    fields.push((FILE_FIELD.to_owned(), String::new()));
                }
                FormPart::Signature => {}
            }
        }
        Ok(fields)
    }

    #[tokio::test]
    async fn reads_text_fields_in_order_and_repeated() {
        let bytes = body(&[
            part("name", b"demo"),
            part("classifiers", b"a"),
            part("classifiers", b"b"),
        ]);
        let fields = read_all(reader(bytes, LIMITS)).await.expect("form");
        assert_eq!(
            fields,
            [("name", "demo"), ("classifiers", "a"), ("classifiers", "b")]
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
        );
    }

    #[tokio::test]
    async fn refuses_what_is_not_multipart() {
        let empty = futures::stream::iter(Vec::<Result<Bytes, Infallible>>::new());
        let error = FormReader::new(empty, "application/json", LIMITS).unwrap_err();
        assert!(matches!(error, FormError::NotMultipart));
    }

    #[tokio::test]
    async fn too_many_parts() {
        let parts: Vec<Vec<u8>> = (0..5).map(|_| part("keywords", b"")).collect();
        let error = read_all(reader(body(&parts), LIMITS)).await.unwrap_err();
        assert!(matches!(error, FormError::TooManyParts(4)), "{error:?}");
        assert_eq!(error.code().http_status(), 400);
    }

    #[tokio::test]
    async fn text_over_budget() {
        let bytes = body(&[part("description", &[b'x'; 1025])]);
        let error = read_all(reader(bytes, LIMITS)).await.unwrap_err();
        assert!(matches!(error, FormError::TooLarge), "{error:?}");
    }

    #[tokio::test]
    async fn a_part_header_that_never_ends_is_cut_at_the_budget() {
        let limits = FormLimits {
            max_text_bytes: 16,
            max_parts: 1,
            idle_timeout: Duration::from_secs(30),
            min_rate: 0,
        };
        let mut bytes =
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"x\"\r\nX-Pad: ")
                .into_bytes();
        // More than the budget (16 + 1 KiB per part + 1 MiB of slack), never a blank line.
        bytes.resize(bytes.len() + 3 * 1024 * 1024, b'y');
        let error = read_all(reader(bytes, limits)).await.unwrap_err();
        assert!(matches!(error, FormError::TooLarge), "{error:?}");
    }

    #[tokio::test]
    async fn invalid_utf8_and_file_tuples() {
        let error = read_all(reader(body(&[part("summary", b"\xff\xfe")]), LIMITS))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "'summary' has invalid data: it is not UTF-8 text"
        );
        let tuple = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"summary\"; filename=\"s.txt\"\r\n\r\nx\r\n"
        );
        let error = read_all(reader(body(&[tuple.into_bytes()]), LIMITS))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "summary: Should not be a tuple.");
    }

    #[tokio::test]
    async fn a_body_cut_off_is_interrupted() {
        let mut bytes = body(&[part("name", b"demo")]);
        bytes.truncate(bytes.len() - 10);
        let error = read_all(reader(bytes, LIMITS)).await.unwrap_err();
        assert!(matches!(error, FormError::Interrupted), "{error:?}");
    }

    #[tokio::test]
    async fn a_silent_client_times_out_with_408() {
        let limits = FormLimits {
            idle_timeout: Duration::from_millis(20),
            ..LIMITS
        };
        let first = futures::stream::iter([Ok::<_, Infallible>(Bytes::from(part("name", b"x")))]);
        let silent = first.chain(futures::stream::pending());
        let reader = FormReader::new(silent, CONTENT_TYPE, limits).expect("multipart");
        let error = read_all(reader).await.unwrap_err();
        assert!(matches!(error, FormError::IdleTimeout(_)), "{error:?}");
        assert_eq!(error.code().http_status(), 408);
    }

    #[tokio::test]
    async fn a_trickling_client_is_cut_below_the_minimum_rate() {
        // One byte every 5 ms: never idle for the 100 ms window, but 20 bytes a window where
        // 1,000 bytes a second asks for 100.
        let limits = FormLimits {
            idle_timeout: Duration::from_millis(100),
            min_rate: 1000,
            ..LIMITS
        };
        let head = Bytes::from(format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\n"
        ));
        let trickle = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Some((Ok::<_, Infallible>(Bytes::from_static(b"x")), ()))
        });
        let body = futures::stream::iter([Ok(head)]).chain(trickle);
        let reader = FormReader::new(Box::pin(body), CONTENT_TYPE, limits).expect("multipart");
        let error = read_all(reader).await.unwrap_err();
        assert!(
            matches!(error, FormError::TooSlow { rate: 1000, .. }),
            "{error:?}"
        );
        assert_eq!(error.code().http_status(), 408);
        assert_eq!(
            error.to_string(),
            "Request timeout: the upload is too slow (under 1000 bytes a second for 0 seconds)."
        );
    }
}
