//! `POST /legacy/`: PyPI's upload API.
//!
//! The checks run in PyPI's order (spec §a.4): identity, form, project permission, filename,
//! content type, then the bytes stream to a staging object (size limits enforced while
//! streaming, nothing buffered whole), and the storage worker does the rest; its answer
//! becomes this response.
//!
//! [`Upload::run`] reads top to bottom: each phase is a function from one typed value to the
//! next (`Received` → `FormHead` → `Authorized` → `Staged` → the worker's verdict), and the
//! verifier is asked once, with the project the form names, in `Upload::authorize`.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::time::Instant;

use base64::Engine;
use tracing::{Instrument, info_span, instrument};
use wharf_blob::{BlobStore, StreamingWrite};
use wharf_core::filename::check_upload_filename;
use wharf_core::form::{ValidatedUpload, validate_upload_form};
use wharf_core::messages;
use wharf_core::name;
use wharf_core::refusal::{ErrorCode, Refusal};
use wharf_core::version::Version;
use wharf_proto::UploadVerdicts;
use wharf_proto::v1::upload_outcome::Result as OutcomeResult;
use wharf_proto::v1::{AuthorizeUploadRequest, FileStaged, Identity, UploadGrant, Uploader};
use wharf_telemetry::{Stage, UploadResult, propagation};

use crate::Gateway;
use crate::form::{FormLimits, FormPart, FormReader};
use crate::rate_limit::{Limited, client_ip};
use crate::response::{Api, refusal_response};
use crate::simple::base_url;

/// The refusal when the verifier cannot be asked: a retryable 503, never a 500.
fn verifier_unavailable(status: tonic::Status) -> Refusal {
    tracing::warn!(code = ?status.code(), "verifier unavailable");
    Refusal::unavailable("The verifier")
}

/// Extracts the API token from the `Authorization` header (spec §a.2).
fn token_from_headers(headers: &HeaderMap) -> Result<String, Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Refusal::forbidden(messages::INVALID_AUTH));
    };
    let value = value
        .to_str()
        .map_err(|_| Refusal::forbidden(messages::INVALID_AUTH))?;
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .map_err(|_| Refusal::forbidden(messages::INVALID_AUTH))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| Refusal::forbidden(messages::INVALID_AUTH))?;
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        if user != "__token__" {
            return Err(Refusal::forbidden(messages::PASSWORD_AUTH));
        }
        return Ok(password.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
        return Ok(credentials.to_owned());
    }
    Err(Refusal::forbidden(messages::INVALID_AUTH))
}

/// The `:action` value from the query string, if any.
fn action_from_query(query: Option<&str>) -> Option<String> {
    let query = query?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == ":action" || key == "%3Aaction" || key == "%3aaction").then(|| value.to_owned())
    })
}

/// Refuses `:action` values other than `file_upload` as PyPI does.
fn check_action(action: &str) -> Result<(), Refusal> {
    match action {
        "file_upload" => Ok(()),
        "submit" | "submit_pkg_info" => Err(Refusal::gone(
            "Project pre-registration is no longer required or supported, upload your files instead.",
        )),
        "doc_upload" => Err(Refusal::gone(
            "Uploading documentation is no longer supported, we recommend using https://readthedocs.org/.",
        )),
        other => Err(Refusal::bad_request(format!(
            "Unknown :action '{other}'. Use :action=file_upload to upload a distribution."
        ))),
    }
}

/// `POST /legacy/`.
#[instrument(skip_all, name = "gateway.upload", fields(
    http.request.method = "POST",
    url.path = "/legacy/",
    wharf.upload_id = tracing::field::Empty,
    wharf.project = tracing::field::Empty,
    wharf.filename = tracing::field::Empty,
    wharf.outcome = tracing::field::Empty,
))]
pub(crate) async fn upload(
    State(gateway): State<Gateway>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Response {
    let upload_id = uuid::Uuid::now_v7().to_string();
    tracing::Span::current().record("wharf.upload_id", upload_id.as_str());
    let client_ip = client_ip(&gateway.settings.rate_limits, &headers, &extensions);
    let result = Upload {
        gateway: &gateway,
        headers: &headers,
        upload_id: &upload_id,
        client_ip,
    }
    .run(query.as_deref(), body)
    .await;
    match result {
        Ok(published) => {
            tracing::Span::current().record("wharf.outcome", "accepted");
            gateway.metrics.upload_answered(published);
            (StatusCode::OK, "").into_response()
        }
        Err(refusal) => {
            tracing::Span::current().record("wharf.outcome", "refused");
            tracing::info!(status = refusal.status(), code = %refusal.code, message = %refusal.message, "upload refused");
            gateway
                .metrics
                .upload_answered(UploadResult::Rejected(refusal.status()));
            refusal_response(Api::Upload(&headers), &refusal)
        }
    }
}

/// `POST /pypi` (the upload URL before `/legacy/`): `410` saying where the API moved (spec
/// §a.1), in PyPI's words without its help link.
pub(crate) async fn moved_to_legacy(
    State(gateway): State<Gateway>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let message = format!(
        "This API has moved to {}/legacy/.",
        base_url(&gateway, &uri, &headers)
    );
    refusal_response(Api::Upload(&headers), &Refusal::gone(message))
}

/// One upload request in progress: what every phase needs.
struct Upload<'a> {
    gateway: &'a Gateway,
    headers: &'a HeaderMap,
    upload_id: &'a str,
    client_ip: Option<IpAddr>,
}

/// Phase 1: the request before its body is read, with the credential from its headers.
struct Received {
    token: String,
    /// The query string named `:action` (and it was `file_upload`).
    action_seen: bool,
    body: Body,
}

/// Phase 2: the form up to its file part.
struct FormHead {
    token: String,
    fields: Vec<(String, String)>,
    action_seen: bool,
    end: HeadEnd,
}

/// What ended the head of the form.
enum HeadEnd {
    /// The file part.
    File(Box<FileAhead>),
    /// The end of the form, without a file.
    NoFile,
    /// A refusal of the body, kept until the identity is known: PyPI checks it first.
    Refused(Refusal),
}

/// The file part the head ended at, with the reader that holds the rest of the form, and the
/// checks PyPI makes on reaching it before it asks about the project ([`check_file_form`]).
struct FileAhead {
    reader: FormReader,
    field: Box<multer::Field<'static>>,
    form: Result<ValidatedUpload, Refusal>,
}

/// Phase 3: identity, form, project permission, filename and content type all passed; the
/// file part is next to read.
struct Authorized {
    identity: Identity,
    grant: UploadGrant,
    form: ValidatedUpload,
    fields: Vec<(String, String)>,
    action_seen: bool,
    reader: FormReader,
    field: Box<multer::Field<'static>>,
    filename: String,
}

/// Phase 4: the file is in staging and the whole form has been read and checked.
struct Staged {
    identity: Identity,
    grant: UploadGrant,
    form: ValidatedUpload,
    filename: String,
    size: u64,
}

impl Upload<'_> {
    /// The upload, phase by phase, each consuming the one before (PyPI's order, spec §a.4).
    async fn run(&self, query: Option<&str>, body: Body) -> Result<UploadResult, Refusal> {
        let received = self.receive(query, body).await?;
        let head = self.read_head(received).await;
        let authorized = self.authorize(head).await?;
        let staged = self.stage(authorized).await?;
        self.publish_and_wait(staged).await
    }

    /// The checks that need no body: the query's `:action`, the per-address limit (before
    /// anything else: it also slows down token guessing) and the credential's form.
    async fn receive(&self, query: Option<&str>, body: Body) -> Result<Received, Refusal> {
        let query_action = action_from_query(query);
        if let Some(action) = &query_action {
            check_action(action)?;
        }
        if let Some(ip) = self.client_ip {
            self.gateway
                .check_rate(Limited::UploadPerIp, &ip.to_string())
                .await?;
        }
        let token = token_from_headers(self.headers)?;
        Ok(Received {
            token,
            action_seen: query_action.is_some(),
            body,
        })
    }

    /// Reads the text fields before the file part, so that the one authorization call can
    /// name the project. Never fails: a refusal of the body waits in [`HeadEnd::Refused`].
    async fn read_head(&self, received: Received) -> FormHead {
        let Received {
            token,
            mut action_seen,
            body,
        } = received;
        let mut fields = Vec::new();
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let settings = &self.gateway.settings;
        let end = match FormReader::new(
            body.into_data_stream(),
            content_type,
            FormLimits {
                max_text_bytes: settings.max_form_text_bytes,
                max_parts: settings.max_form_parts,
                idle_timeout: settings.body_idle_timeout,
                min_rate: settings.upload_min_rate,
            },
        ) {
            Err(error) => HeadEnd::Refused(error.into()),
            Ok(mut reader) => match next_field(&mut reader, &mut fields, &mut action_seen).await {
                Ok(Some(field)) => HeadEnd::File(Box::new(FileAhead {
                    form: check_file_form(&fields, field.file_name().unwrap_or_default()),
                    reader,
                    field,
                })),
                Ok(None) => HeadEnd::NoFile,
                Err(refusal) => HeadEnd::Refused(refusal),
            },
        };
        FormHead {
            token,
            fields,
            action_seen,
            end,
        }
    }

    /// The one authorization call, then its verdicts and the form's checks in PyPI's order:
    /// identity, per-token limit (only for a token whose signature holds, so a forged token
    /// cannot use up its victim's limit), the body, the form, the project permission, the
    /// filename and content type, and the limits on creating projects.
    async fn authorize(&self, head: FormHead) -> Result<Authorized, Refusal> {
        let FormHead {
            token,
            fields,
            action_seen,
            end,
        } = head;
        // The call names the project only when its verdict can matter: a file part follows
        // a valid form.
        let request = match &end {
            HeadEnd::File(file) => match &file.form {
                // What the upload will commit, for the signed grant the worker verifies.
                Ok(form) => AuthorizeUploadRequest {
                    token,
                    project_name: form.metadata.name.clone().unwrap_or_default(),
                    upload_id: self.upload_id.to_owned(),
                    filename: file.field.file_name().unwrap_or_default().to_owned(),
                    version: form.metadata.version.clone().unwrap_or_default(),
                    max_project_size: self.gateway.settings.max_project_size,
                },
                Err(_) => AuthorizeUploadRequest {
                    token,
                    ..AuthorizeUploadRequest::default()
                },
            },
            _ => AuthorizeUploadRequest {
                token,
                ..AuthorizeUploadRequest::default()
            },
        };
        let verdicts = self.call_verifier(request).await?;
        let identity = verdicts.identity?;
        if identity.signature_verified && !identity.token_id.is_empty() {
            self.gateway
                .check_rate(Limited::UploadPerToken, &identity.token_id)
                .await?;
        }
        let (reader, field, form) = match end {
            HeadEnd::Refused(refusal) => return Err(refusal),
            HeadEnd::NoFile => {
                if !action_seen {
                    return Err(missing_action());
                }
                // PyPI reports form errors before a missing file.
                validate_upload_form(&fields)?;
                return Err(Refusal::bad_request("Upload payload does not have a file."));
            }
            HeadEnd::File(file) => {
                let FileAhead {
                    reader,
                    field,
                    form,
                } = *file;
                (reader, field, form?)
            }
        };
        let grant = verdicts
            .project
            .unwrap_or_else(|| Err(Refusal::unavailable("The verifier")))?;
        let filename = field.file_name().unwrap_or_default().to_owned();
        check_filename(&form, &filename)?;
        check_part_content_type(field.content_type())?;
        if grant.may_create_project {
            self.check_new_project_rate(&identity).await?;
        }
        Ok(Authorized {
            identity,
            grant,
            form,
            fields,
            action_seen,
            reader,
            field,
            filename,
        })
    }

    /// `AuthorizeUpload`, the upload's only call to the verifier (its client span is the
    /// transport's, see `wharf_telemetry::GrpcClientTrace`).
    async fn call_verifier(
        &self,
        request: AuthorizeUploadRequest,
    ) -> Result<UploadVerdicts, Refusal> {
        let mut verifier = self.gateway.verifier.clone();
        let started = Instant::now();
        let response = verifier.authorize_upload(request).await;
        self.gateway
            .metrics
            .observe_stage(Stage::Verifier, started.elapsed());
        let response = response.map_err(verifier_unavailable)?;
        UploadVerdicts::try_from(response.into_inner())
            .map_err(|_| Refusal::unavailable("The verifier"))
    }

    /// PyPI's limits on creating projects, per user and per client IP (spec a.7), checked
    /// once the upload is known to create one.
    async fn check_new_project_rate(&self, identity: &Identity) -> Result<(), Refusal> {
        if !identity.user_id.is_empty() {
            self.gateway
                .check_rate(Limited::NewProjectPerUser, &identity.user_id)
                .await?;
        }
        if let Some(ip) = self.client_ip {
            self.gateway
                .check_rate(Limited::NewProjectPerIp, &ip.to_string())
                .await?;
        }
        Ok(())
    }

    /// Streams the file to staging and reads the rest of the form; fields sent after the
    /// file are checked with the whole form (locally: they cannot change the project, see
    /// below). Nothing stays in staging when this refuses.
    async fn stage(&self, authorized: Authorized) -> Result<Staged, Refusal> {
        let Authorized {
            identity,
            grant,
            form,
            mut fields,
            mut action_seen,
            mut reader,
            field,
            filename,
        } = authorized;
        let staged = async {
            let size = self.stream_to_staging(field, &grant, &form).await?;
            let before = fields.len();
            if next_field(&mut reader, &mut fields, &mut action_seen)
                .await?
                .is_some()
            {
                return Err(Refusal::bad_request(
                    "Upload payload has more than one file.",
                ));
            }
            if !action_seen {
                return Err(missing_action());
            }
            if fields.len() == before {
                return Ok((form, size));
            }
            // The whole form again. A single-use field sent twice is refused, and a field
            // whose last value is `UNKNOWN` is dropped, so a form that passes names the
            // project and version authorized above: only the form's own checks can change.
            let form = validate_upload_form(&fields)?;
            check_filename(&form, &filename)?;
            Ok((form, size))
        }
        .await;
        match staged {
            Ok((form, size)) => Ok(Staged {
                identity,
                grant,
                form,
                filename,
                size,
            }),
            Err(refusal) => {
                self.discard_staging().await;
                Err(refusal)
            }
        }
    }

    /// Streams the file part to the staging object, enforcing the size limits as it goes.
    async fn stream_to_staging(
        &self,
        mut field: Box<multer::Field<'static>>,
        grant: &UploadGrant,
        form: &ValidatedUpload,
    ) -> Result<u64, Refusal> {
        let settings = &self.gateway.settings;
        let project_name = form.metadata.name.clone().unwrap_or_default();
        let project_total = grant.project_total_size;
        let key =
            BlobStore::staging_key(self.upload_id).map_err(|_| Refusal::unavailable("Storage"))?;
        let mut write: StreamingWrite = self.gateway.blobs.start_write(key);
        let mut size: u64 = 0;
        let started = Instant::now();
        let outcome = async {
            while let Some(chunk) = FormReader::file_chunk(&mut field).await? {
                size += chunk.len() as u64;
                if size > settings.max_file_size {
                    return Err(Refusal::bad_request(format!(
                        "File too large. Limit for project '{project_name}' is {} MB. \
                         See https://pypi.org/help/#file-size-limit for more information.",
                        settings.max_file_size / (1024 * 1024)
                    )));
                }
                // The fast refusal; the worker's commit enforces the limit again, under the
                // project's lock, for uploads that pass this check at the same time.
                if size + project_total > settings.max_project_size {
                    return Err(Refusal::bad_request(messages::project_too_large(
                        &project_name,
                        settings.max_project_size,
                    )));
                }
                write.write(chunk).await.map_err(|error| {
                    tracing::warn!(error = %error, "staging write failed");
                    Refusal::unavailable("Storage")
                })?;
            }
            Ok(())
        }
        .instrument(info_span!("gateway.stage_file"))
        .await;
        match outcome {
            Ok(()) => {
                write.finish().await.map_err(|error| {
                    tracing::warn!(error = %error, "staging write failed");
                    Refusal::unavailable("Storage")
                })?;
                let metrics = &self.gateway.metrics;
                metrics.observe_stage(Stage::StageFile, started.elapsed());
                metrics.bytes_received(size);
                Ok(size)
            }
            Err(refusal) => {
                if let Err(error) = write.abort().await {
                    tracing::warn!(error = %error, "could not abort the staging write");
                }
                Err(refusal)
            }
        }
    }

    async fn discard_staging(&self) {
        if let Ok(key) = BlobStore::staging_key(self.upload_id)
            && let Err(error) = self.gateway.blobs.delete(&key).await
        {
            tracing::warn!(error = %error, "could not delete staged bytes");
        }
    }

    /// Phase 5: hands the staged file to the workers and waits for the verdict.
    async fn publish_and_wait(&self, staged: Staged) -> Result<UploadResult, Refusal> {
        let Staged {
            identity,
            grant,
            form,
            filename,
            size,
        } = staged;
        let published = async {
            let uploaded_via = self
                .headers
                .get(header::USER_AGENT)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let publish_span = info_span!(
                "gateway.publish_staged",
                otel.kind = "producer",
                messaging.system = "wharf-bus",
                messaging.operation.type = "publish",
                messaging.destination.name = wharf_bus::SUBJECT_STAGED,
            );
            let event = FileStaged {
                upload_id: self.upload_id.to_owned(),
                staging_key: BlobStore::staging_key(self.upload_id)
                    .map(|key| key.to_string())
                    .unwrap_or_default(),
                size,
                filename,
                filetype: form.filetype.as_str().to_owned(),
                pyversion: form.pyversion,
                md5_digest: form.declared.md5.unwrap_or_default(),
                sha256_digest: form.declared.sha256.unwrap_or_default(),
                blake2_256_digest: form.declared.blake2_256.unwrap_or_default(),
                comment: form.comment.unwrap_or_default(),
                uploaded_via,
                metadata: Some(form.metadata.into()),
                attestations: form.attestations,
                uploader: Some(Uploader {
                    user_id: identity.user_id,
                    publisher_id: identity.publisher_id,
                    may_create_project: grant.may_create_project,
                    user_name: identity.user_name,
                }),
                grant: grant.signed,
                received_at_micros: jiff::Timestamp::now().as_microsecond(),
                max_project_size: Some(self.gateway.settings.max_project_size),
                // The publishing span's context, so the worker's span is its child.
                trace_context: propagation::span_context_map(&publish_span),
            };
            let bus = &self.gateway.bus;
            let watch = bus
                .watch_outcome(self.upload_id)
                .await
                .map_err(bus_unavailable)?;
            bus.publish_staged(&event)
                .instrument(publish_span)
                .await
                .map_err(bus_unavailable)?;
            Ok(watch)
        }
        .await;
        let watch = match published {
            Ok(watch) => watch,
            Err(refusal) => {
                self.discard_staging().await;
                return Err(refusal);
            }
        };
        let await_span = info_span!("gateway.await_outcome");
        let started = Instant::now();
        let outcome = watch
            .wait(self.gateway.settings.outcome_timeout)
            .instrument(await_span.clone())
            .await;
        self.gateway
            .metrics
            .observe_stage(Stage::AwaitOutcome, started.elapsed());
        let outcome = outcome.map_err(|error| {
            tracing::warn!(error = %error, "no outcome in time");
            Refusal::new(
                ErrorCode::Unavailable,
                "The upload is still being processed; retry the upload to learn its result.",
            )
        })?;
        // Link the wait to the worker span that answered (on a redelivery, another trace).
        propagation::add_link_from_map(&await_span, &outcome.trace_context);
        match outcome.result {
            Some(OutcomeResult::Published(published)) if published.already_existed => {
                Ok(UploadResult::Identical)
            }
            Some(OutcomeResult::Published(_)) => Ok(UploadResult::Published),
            Some(OutcomeResult::Rejected(rejected)) => Err(Refusal::from(rejected)),
            None => Err(Refusal::unavailable("The storage worker")),
        }
    }
}

/// Reads parts until the next file part (returned) or the end of the form (`None`): text
/// fields go to `fields`, an `:action` field is checked, signatures are skipped.
async fn next_field(
    reader: &mut FormReader,
    fields: &mut Vec<(String, String)>,
    action_seen: &mut bool,
) -> Result<Option<Box<multer::Field<'static>>>, Refusal> {
    while let Some(part) = reader.next_part().await? {
        match part {
            FormPart::Signature => {}
            FormPart::File(field) => return Ok(Some(field)),
            FormPart::Text { name, value } if name == ":action" => {
                check_action(&value)?;
                *action_seen = true;
            }
            FormPart::Text { name, value } => fields.push((name, value)),
        }
    }
    Ok(None)
}

/// The checks PyPI makes on reaching the file part before it asks about the project: the
/// part names a file, and the form is valid. Records the project and filename on the span.
fn check_file_form(
    fields: &[(String, String)],
    filename: &str,
) -> Result<ValidatedUpload, Refusal> {
    if filename.is_empty() {
        return Err(Refusal::bad_request("Upload payload does not have a file."));
    }
    let form = validate_upload_form(fields)?;
    let span = tracing::Span::current();
    span.record(
        "wharf.project",
        form.metadata.name.as_deref().unwrap_or_default(),
    );
    span.record("wharf.filename", filename);
    Ok(form)
}

/// The filename against the form's project, version and file type.
fn check_filename(form: &ValidatedUpload, filename: &str) -> Result<(), Refusal> {
    let project_name = form.metadata.name.as_deref().unwrap_or_default();
    let version = Version::parse(form.metadata.version.as_deref().unwrap_or_default())
        .map_err(Refusal::bad_request)?;
    check_upload_filename(
        filename,
        form.filetype,
        project_name,
        &name::normalize(project_name),
        &version,
        project_name,
    )
}

/// A part without a Content-Type (uv sends none) counts as application/octet-stream, as
/// PyPI's multipart parser defaults it; images are refused, as on PyPI.
fn check_part_content_type(content_type: Option<&mime::Mime>) -> Result<(), Refusal> {
    let allowed = content_type.is_none_or(|mime| {
        let essence = mime.essence_str();
        !essence.is_empty() && !essence.starts_with("image/")
    });
    if allowed {
        Ok(())
    } else {
        Err(Refusal::bad_request("Invalid distribution file."))
    }
}

fn missing_action() -> Refusal {
    Refusal::bad_request("Missing :action. Use :action=file_upload to upload a distribution.")
}

fn bus_unavailable(error: wharf_bus::BusError) -> Refusal {
    tracing::warn!(error = %error, "bus unavailable");
    Refusal::unavailable("The event bus")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers_with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn basic_with_token_user_yields_the_password() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("__token__: pypi-abc \n");
        let token = token_from_headers(&headers_with(&format!("Basic {encoded}"))).expect("token");
        assert_eq!(token, "pypi-abc");
    }

    #[test]
    fn basic_with_another_user_is_refused_with_pypi_text() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:secret");
        let refusal = token_from_headers(&headers_with(&format!("Basic {encoded}"))).unwrap_err();
        assert_eq!(refusal.status(), 403);
        assert!(
            refusal
                .message
                .starts_with("Username/Password authentication is no longer supported.")
        );
    }

    #[test]
    fn token_and_bearer_schemes_any_case() {
        assert_eq!(
            token_from_headers(&headers_with("token pypi-x")).expect("token"),
            "pypi-x"
        );
        assert_eq!(
            token_from_headers(&headers_with("BEARER pypi-y")).expect("bearer"),
            "pypi-y"
        );
    }

    #[test]
    fn missing_or_unknown_scheme_is_invalid_auth() {
        assert_eq!(
            token_from_headers(&HeaderMap::new()).unwrap_err().message,
            messages::INVALID_AUTH
        );
        assert_eq!(
            token_from_headers(&headers_with("Digest x"))
                .unwrap_err()
                .message,
            messages::INVALID_AUTH
        );
    }

    #[test]
    fn actions_other_than_file_upload_are_refused() {
        assert!(check_action("file_upload").is_ok());
        assert_eq!(check_action("submit").unwrap_err().status(), 410);
        assert_eq!(check_action("doc_upload").unwrap_err().status(), 410);
        assert_eq!(check_action("bogus").unwrap_err().status(), 400);
        assert_eq!(
            action_from_query(Some("a=1&:action=doc_upload")).as_deref(),
            Some("doc_upload")
        );
    }
}
