//! The verifier: Wharf's security boundary.
//!
//! Every credential question the gateway has (who holds this token, may it upload to that
//! project: one `AuthorizeUpload` call per upload) is answered here, over gRPC ([`wharf_proto::v1::verifier_server::Verifier`]), so
//! that no other service ever touches key material. API tokens are macaroons in PyPI's wire
//! format (see `wharf-macaroon`); their root keys live in the index database, sealed under a
//! token key the database does not hold ([`TokenKeys`]).

#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
mod token_key;
mod tokens;
mod trusted;

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;
use wharf_core::messages;
use wharf_core::name;
use wharf_core::refusal::Refusal;
use wharf_index::{Index, IndexError, TokenRecord};
use wharf_macaroon::{Caveat, ProjectRef, VerificationContext};
use wharf_proto::UploadVerdicts;
use wharf_proto::grant::UploadGrantSigner;
use wharf_proto::v1::verifier_server::Verifier;
use wharf_proto::v1::{
    AuthorizeUploadRequest, AuthorizeUploadResponse, BurnTokenRequest, BurnTokenResponse, Identity,
    MintTokenRequest, MintTokenResponse, MintedToken, OidcAudienceRequest, OidcAudienceResponse,
    UploadGrant, UploadGrantClaims, mint_token_response,
};
use wharf_telemetry::Metrics;

pub use token_key::{
    SealingError, TokenKeyError, TokenKeys, add_key_to_file, keep_only_sealing_key,
    prepare_token_keys, reseal_root_keys,
};
pub use tokens::{TokenError, TokenRequest, mint_user_token};
pub use trusted::{Minted, OidcSettings, publisher_label};

/// The prefix of Wharf's API tokens (the same as PyPI's, so existing tools recognise them).
pub const TOKEN_PREFIX: &str = "pypi";

/// Operator settings of the verifier.
#[derive(Debug, Clone, Default)]
pub struct VerifierSettings {
    /// Normalized project names nobody may create.
    pub prohibited_names: Vec<String>,
    /// Trusted publishing.
    pub oidc: OidcSettings,
    /// Signs the upload grants storage workers verify (issue #12, finding 5); without it no
    /// grant is issued, and workers refuse every upload.
    pub upload_grants: Option<UploadGrantSigner>,
    /// The keys that seal the API tokens' root keys (defaults: a random in-memory key).
    pub token_keys: TokenKeys,
}

/// How long a worker accepts an upload grant after it was issued: longer than the largest
/// upload takes to stream and wait, so a redelivery after a worker crash is still accepted.
pub const UPLOAD_GRANT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long the JWKS of an issuer may take to fetch, and how large its documents may be.
const JWKS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const JWKS_MAX_BYTES: usize = 1024 * 1024;
/// An unknown `kid` refreshes an issuer's keys at most this often (PyPI: 60 s).
const JWKS_REFRESH_COOLDOWN: std::time::Duration = std::time::Duration::from_secs(60);

/// Errors of the verifier itself (not refusals, which are answers).
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The index could not be read.
    #[error("index unavailable")]
    Index(#[from] IndexError),
    /// The verifier could not be set up.
    #[error("verifier set-up failed: {0}")]
    Setup(String),
    /// A token's root key is sealed under a token key that is not configured.
    #[error(transparent)]
    TokenKey(TokenKeyError),
}

impl From<VerifierError> for Status {
    fn from(error: VerifierError) -> Status {
        match &error {
            VerifierError::Setup(message) => {
                tracing::error!(message = %message, "verifier set-up error");
                Status::internal("the verifier is misconfigured")
            }
            VerifierError::TokenKey(inner) => {
                tracing::error!(error = %inner, "verifier token key error");
                Status::unavailable("the verifier cannot open the token's root key")
            }
            VerifierError::Index(inner) => {
                tracing::error!(error = %inner, source = ?std::error::Error::source(inner), "verifier index error");
                Status::unavailable("the verifier's index database is unavailable")
            }
        }
    }
}

/// The verifier service.
#[derive(Debug, Clone)]
pub struct VerifierService {
    index: Arc<dyn Index>,
    settings: Arc<VerifierSettings>,
    trusted: Arc<trusted::TrustedPublishing>,
    metrics: Metrics,
}

/// Counts JWKS fetches (and failures) around the real fetcher.
struct CountingFetcher {
    inner: wharf_oidc::HttpJwksFetcher,
    metrics: Metrics,
}

#[async_trait::async_trait]
impl wharf_oidc::JwksFetcher for CountingFetcher {
    async fn fetch(
        &self,
        issuer: &wharf_oidc::Issuer,
    ) -> Result<wharf_oidc::jsonwebtoken::jwk::JwkSet, wharf_oidc::FetchError> {
        let fetched = self.inner.fetch(issuer).await;
        self.metrics.jwks_fetch(fetched.is_ok());
        fetched
    }
}

/// A token's stored record, its holder and the parsed macaroon.
struct KnownHolder {
    record: TokenRecord,
    /// The record's root key, opened.
    root_key: Vec<u8>,
    identity: Identity,
    macaroon: wharf_macaroon::Macaroon,
}

/// The outcome of looking a token up: the holder, or the denial to send.
enum Holder {
    Known(Box<KnownHolder>),
    Refused(Refusal),
}

impl VerifierService {
    /// A verifier reading tokens, users and projects from `index`.
    pub fn new(
        index: Arc<dyn Index>,
        settings: VerifierSettings,
    ) -> Result<VerifierService, VerifierError> {
        VerifierService::new_with_metrics(index, settings, Metrics::new())
    }

    /// A verifier that counts token exchanges and JWKS fetches into `metrics`.
    pub fn new_with_metrics(
        index: Arc<dyn Index>,
        settings: VerifierSettings,
        metrics: Metrics,
    ) -> Result<VerifierService, VerifierError> {
        let fetcher = wharf_oidc::HttpJwksFetcher::new(JWKS_TIMEOUT, JWKS_MAX_BYTES)
            .map_err(|error| VerifierError::Setup(format!("JWKS client: {error}")))?;
        let fetcher = CountingFetcher {
            inner: fetcher,
            metrics: metrics.clone(),
        };
        let service = VerifierService::with_key_store(
            index,
            settings,
            wharf_oidc::KeyStore::new(Arc::new(fetcher), JWKS_REFRESH_COOLDOWN),
            None,
        );
        Ok(VerifierService { metrics, ..service })
    }

    /// A verifier with a given JWKS key store (tests) and, optionally, a bus for audit events.
    pub fn with_key_store(
        index: Arc<dyn Index>,
        settings: VerifierSettings,
        keys: wharf_oidc::KeyStore,
        events: Option<Arc<dyn wharf_bus::UploadBus>>,
    ) -> VerifierService {
        let trusted = trusted::TrustedPublishing {
            settings: settings.oidc.clone(),
            keys: Arc::new(keys),
            events,
            token_keys: settings.token_keys.clone(),
        };
        VerifierService {
            index,
            settings: Arc::new(settings),
            trusted: Arc::new(trusted),
            metrics: Metrics::new(),
        }
    }

    /// The keys that seal the API tokens' root keys.
    pub fn token_keys(&self) -> &TokenKeys {
        &self.settings.token_keys
    }

    /// Publishes audit events (mints, refusals, burns) on `bus` as well as in the index.
    pub fn with_events(self, bus: Arc<dyn wharf_bus::UploadBus>) -> VerifierService {
        let trusted = trusted::TrustedPublishing {
            settings: self.settings.oidc.clone(),
            keys: Arc::clone(&self.trusted.keys),
            events: Some(bus),
            token_keys: self.settings.token_keys.clone(),
        };
        VerifierService {
            trusted: Arc::new(trusted),
            ..self
        }
    }

    /// Exchanges an OIDC identity token for a short-lived API token.
    pub async fn exchange_oidc_token(
        &self,
        oidc_token: &str,
    ) -> Result<Result<Minted, Refusal>, VerifierError> {
        self.trusted
            .mint(self.index.as_ref(), &self.settings, oidc_token)
            .await
    }

    /// Answers an upload's one credential question: who holds `token` and, when
    /// `project_name` is given, whether that holder may upload to the project. The token is
    /// decoded and looked up once, here.
    pub async fn authorize(
        &self,
        token: &str,
        project_name: Option<&str>,
    ) -> Result<UploadVerdicts, VerifierError> {
        let holder = match self.find_holder(token).await? {
            Holder::Known(holder) => *holder,
            Holder::Refused(refusal) => {
                return Ok(UploadVerdicts {
                    identity: Err(refusal),
                    project: None,
                });
            }
        };
        let project = match project_name {
            Some(project_name) => Some(self.decide_project(&holder, project_name, true).await?),
            None => None,
        };
        Ok(UploadVerdicts {
            identity: Ok(holder.identity),
            project,
        })
    }

    /// Revokes a token minted by trusted publishing, only if it is genuine: its identifier
    /// names a stored token and its signature verifies against that token's root key, as for
    /// an upload. The identifier alone is public (it is in every `oidc.minted` event), so a
    /// forged token is ignored exactly like an unknown one (issue #12, finding 3).
    pub async fn burn_minted_token(&self, token: &str) -> Result<(), VerifierError> {
        let Holder::Known(holder) = self.find_holder(token).await? else {
            return Ok(());
        };
        if !holder.identity.signature_verified {
            return Ok(());
        }
        self.trusted
            .burn(self.index.as_ref(), &holder.identity.token_id)
            .await
    }

    /// Finds the holder of a token: it must parse, and its identifier must name a stored
    /// token of an existing user or publisher. The caveats are checked later, against a
    /// project, as PyPI does; the signature alone is checked here, so that the gateway counts
    /// only real holders against a token's rate limit.
    async fn find_holder(&self, token: &str) -> Result<Holder, VerifierError> {
        let refused = || Holder::Refused(Refusal::forbidden(messages::INVALID_AUTH));
        let Ok(macaroon) = wharf_macaroon::decode_token(token, TOKEN_PREFIX) else {
            return Ok(refused());
        };
        let Ok(identifier) = std::str::from_utf8(macaroon.identifier()) else {
            return Ok(refused());
        };
        let Ok(token_id) = uuid::Uuid::parse_str(identifier) else {
            return Ok(refused());
        };
        let Some(record) = self.index.find_token(&token_id.to_string()).await? else {
            return Ok(refused());
        };
        let root_key = match self.settings.token_keys.root_key(&record.stored_root_key()) {
            Ok(root_key) => root_key,
            // A key the verifier is not configured with is the operator's problem, not the
            // client's: it is told the verifier is unavailable and the log says why.
            Err(error @ TokenKeyError::UnknownKeyId { .. }) => {
                return Err(VerifierError::TokenKey(error));
            }
            Err(error) => {
                tracing::warn!(error = %error, "token root key does not open");
                return Ok(refused());
            }
        };
        let signature_verified = macaroon.verify_signature(&root_key);
        let identity = match (&record.user_id, &record.user_name, &record.publisher_id) {
            (Some(user_id), Some(user_name), _) => Identity {
                kind: "user".to_owned(),
                user_id: user_id.clone(),
                user_name: user_name.clone(),
                publisher_id: String::new(),
                token_id: record.id.clone(),
                signature_verified,
            },
            (None, _, Some(publisher_id)) => Identity {
                kind: "publisher".to_owned(),
                user_id: String::new(),
                user_name: String::new(),
                publisher_id: publisher_id.clone(),
                token_id: record.id.clone(),
                signature_verified,
            },
            _ => return Ok(refused()),
        };
        Ok(Holder::Known(Box::new(KnownHolder {
            record,
            root_key,
            identity,
            macaroon,
        })))
    }

    /// Whether `holder` may upload to the project named `project_name`: the token's caveats
    /// and signature against that project, then the holder's rights on it (or to create it).
    /// `may_retry` allows deciding once more when a concurrent upload created the project
    /// during this decision.
    async fn decide_project(
        &self,
        holder: &KnownHolder,
        project_name: &str,
        may_retry: bool,
    ) -> Result<Result<UploadGrant, Refusal>, VerifierError> {
        let KnownHolder {
            record,
            root_key,
            identity,
            macaroon,
        } = holder;
        let normalized = name::normalize(project_name);
        let project = self.index.find_project(&normalized).await?;

        let stored_caveats = match parse_stored_caveats(record) {
            Ok(caveats) => caveats,
            Err(message) => {
                return Ok(Err(Refusal::forbidden(format!(
                    "Invalid API Token: {message}"
                ))));
            }
        };
        let is_publisher = identity.kind == "publisher";
        if is_publisher && project.is_none() {
            // PyPI: only users create projects; a publisher's project must exist (a pending
            // publisher creates it during the exchange).
            return Ok(Err(Refusal::bad_request(messages::NON_USER_CREATE)));
        }
        let now = jiff::Timestamp::now();
        let context = VerificationContext {
            now: now.as_second(),
            project: Some(ProjectRef {
                normalized_name: &normalized,
                id: project.as_ref().map_or("", |project| project.id.as_str()),
            }),
            user_id: (!is_publisher).then_some(identity.user_id.as_str()),
            oidc_publisher_id: is_publisher.then_some(identity.publisher_id.as_str()),
        };
        let verified = if is_publisher {
            // The publisher must still be attached to the project, not only have been when
            // the token was minted.
            let publisher = self.index.find_publisher(&identity.publisher_id).await?;
            let attached: Vec<&str> = publisher
                .as_ref()
                .map(|publisher| publisher.project_ids.iter().map(String::as_str).collect())
                .unwrap_or_default();
            wharf_macaroon::verify_with_publisher_projects(
                macaroon,
                root_key,
                &stored_caveats,
                &context,
                &attached,
            )
        } else {
            wharf_macaroon::verify(macaroon, root_key, &stored_caveats, &context)
        };
        if let Err(failure) = verified {
            return Ok(Err(Refusal::forbidden(format!(
                "Invalid API Token: {failure}"
            ))));
        }
        self.index
            .touch_token(&record.id, now.as_microsecond())
            .await?;

        match project {
            Some(project) if is_publisher => {
                if project.status == "archived" || project.status == "quarantined" {
                    return Ok(Err(Refusal::forbidden(messages::token_not_allowed(
                        &project.name,
                    ))));
                }
                Ok(Ok(existing_project_grant(&project)))
            }
            Some(project) => {
                let role = self.index.user_role(&project.id, &identity.user_id).await?;
                let may_upload = project.status != "archived"
                    && matches!(role.as_deref(), Some("Owner" | "Maintainer"));
                if !may_upload {
                    return Ok(Err(Refusal::forbidden(messages::user_not_allowed(
                        &identity.user_name,
                        &project.name,
                    ))));
                }
                Ok(Ok(existing_project_grant(&project)))
            }
            None => {
                if let Err(rejection) =
                    name::check_new_project_name(project_name, &self.settings.prohibited_names)
                {
                    return Ok(Err(rejection));
                }
                let ultranormalized = name::ultranormalize(project_name);
                let similar = self
                    .index
                    .find_projects_by_ultranormalized(&ultranormalized)
                    .await?;
                if may_retry
                    && similar
                        .iter()
                        .any(|project| project.normalized_name == normalized)
                {
                    // A concurrent first upload created this very project since the lookup
                    // above: decide again, against the project as it now exists (the holder
                    // stays the one found above).
                    return Box::pin(self.decide_project(holder, project_name, false)).await;
                }
                if !similar.is_empty() {
                    return Ok(Err(name::too_similar_rejection(project_name)));
                }
                Ok(Ok(UploadGrant {
                    project_id: String::new(),
                    may_create_project: true,
                    project_total_size: 0,
                    signed: None,
                }))
            }
        }
    }
}

impl VerifierService {
    /// Attaches the signed grant a storage worker verifies to a granted upload that names
    /// itself (its id, filename and version): what the worker may commit, for whom, until
    /// when.
    fn sign_grant(&self, request: &AuthorizeUploadRequest, verdicts: &mut UploadVerdicts) {
        let (Some(signer), Ok(identity), Some(Ok(grant))) = (
            &self.settings.upload_grants,
            &verdicts.identity,
            &mut verdicts.project,
        ) else {
            return;
        };
        if request.upload_id.is_empty() {
            return;
        }
        let now = jiff::Timestamp::now().as_microsecond();
        let ttl = i64::try_from(UPLOAD_GRANT_TTL.as_micros()).unwrap_or(i64::MAX);
        let claims = UploadGrantClaims {
            upload_id: request.upload_id.clone(),
            normalized_name: name::normalize(&request.project_name),
            project_id: grant.project_id.clone(),
            filename: request.filename.clone(),
            version: request.version.clone(),
            user_id: identity.user_id.clone(),
            publisher_id: identity.publisher_id.clone(),
            may_create_project: grant.may_create_project,
            project_total_size: grant.project_total_size,
            max_project_size: request.max_project_size,
            issued_at_micros: now,
            expires_at_micros: now.saturating_add(ttl),
        };
        grant.signed = Some(signer.sign(&claims));
    }
}

/// The grant to upload to an existing project.
fn existing_project_grant(project: &wharf_index::Project) -> UploadGrant {
    UploadGrant {
        project_id: project.id.clone(),
        may_create_project: false,
        project_total_size: u64::try_from(project.total_size).unwrap_or(0),
        signed: None,
    }
}

fn parse_stored_caveats(record: &TokenRecord) -> Result<Vec<Caveat>, String> {
    let strings = record
        .caveat_strings()
        .map_err(|_| "malformed stored caveats".to_owned())?;
    strings
        .iter()
        .map(|caveat| Caveat::parse(caveat.as_bytes()))
        .collect()
}

#[tonic::async_trait]
impl Verifier for VerifierService {
    async fn oidc_audience(
        &self,
        _request: Request<OidcAudienceRequest>,
    ) -> Result<Response<OidcAudienceResponse>, Status> {
        let oidc = &self.settings.oidc;
        Ok(Response::new(OidcAudienceResponse {
            enabled: oidc.enabled,
            audience: oidc.audience.clone(),
        }))
    }

    async fn mint_token(
        &self,
        request: Request<MintTokenRequest>,
    ) -> Result<Response<MintTokenResponse>, Status> {
        let request = request.into_inner();
        let exchanged = if request.payload_error.is_empty() {
            self.exchange_oidc_token(&request.oidc_token).await?
        } else {
            let refusal = messages::trusted_publishing::invalid_payload(request.payload_error);
            self.trusted
                .record_refusal(self.index.as_ref(), &refusal)
                .await;
            Err(refusal)
        };
        self.metrics
            .mint_outcome(exchanged.as_ref().err().map(|error| error.code.as_str()));
        let result = match exchanged {
            Ok(minted) => mint_token_response::Result::Minted(MintedToken {
                token: minted.token,
                expires: minted.expires,
            }),
            Err(refusal) => mint_token_response::Result::Refused(refusal.into()),
        };
        Ok(Response::new(MintTokenResponse {
            result: Some(result),
        }))
    }

    async fn burn_token(
        &self,
        request: Request<BurnTokenRequest>,
    ) -> Result<Response<BurnTokenResponse>, Status> {
        self.burn_minted_token(&request.get_ref().token).await?;
        Ok(Response::new(BurnTokenResponse {}))
    }

    #[instrument(skip_all, name = "verifier.authorize_upload", fields(wharf.project = %request.get_ref().project_name))]
    async fn authorize_upload(
        &self,
        request: Request<AuthorizeUploadRequest>,
    ) -> Result<Response<AuthorizeUploadResponse>, Status> {
        let request = request.into_inner();
        let project_name = Some(request.project_name.as_str()).filter(|name| !name.is_empty());
        let mut verdicts = self.authorize(&request.token, project_name).await?;
        self.sign_grant(&request, &mut verdicts);
        Ok(Response::new(verdicts.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_index::prelude::*;
    use wharf_index::{
        CommitResult, NewFile, NewToken, NewUpload, Project, ProjectTarget, ReleaseTarget,
        TokenSummary, User,
    };
    use wharf_index_sqlite::SqliteIndex;

    struct Fixture {
        _dir: tempfile::TempDir,
        index: Arc<dyn Index>,
        verifier: VerifierService,
        keys: TokenKeys,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let index: Arc<dyn Index> = Arc::new(
            SqliteIndex::open(&dir.path().join("index.sqlite3"))
                .await
                .expect("index"),
        );
        let keys = TokenKeys::ephemeral();
        let verifier = VerifierService::new(
            Arc::clone(&index),
            VerifierSettings {
                prohibited_names: vec!["forbidden-name".to_owned()],
                token_keys: keys.clone(),
                ..VerifierSettings::default()
            },
        )
        .expect("verifier");
        Fixture {
            _dir: dir,
            index,
            verifier,
            keys,
        }
    }

    async fn token_for(
        fixture: &Fixture,
        user: &str,
        projects: &[&str],
        expires_at: Option<i64>,
    ) -> String {
        if fixture
            .index
            .find_user_by_name(user)
            .await
            .expect("lookup")
            .is_none()
        {
            fixture.index.create_user(user, 0).await.expect("user");
        }
        let request = TokenRequest {
            user_name: user.to_owned(),
            projects: projects
                .iter()
                .map(|project| (*project).to_owned())
                .collect(),
            expires_at,
            description: String::new(),
            location: "test".to_owned(),
        };
        let now = jiff::Timestamp::now().as_second();
        mint_user_token(fixture.index.as_ref(), &fixture.keys, &request, now)
            .await
            .expect("token")
            .1
    }

    /// Publishes one file so that `project` exists, owned by `owner_id`.
    async fn create_project(fixture: &Fixture, project: &str, owner_id: &str) {
        let upload = NewUpload {
            upload_id: uuid::Uuid::new_v4().to_string(),
            project: ProjectTarget {
                name: project.to_owned(),
                normalized_name: name::normalize(project),
                ultranormalized_name: name::ultranormalize(project),
                create_with_owner: Some(owner_id.to_owned()),
            },
            release: ReleaseTarget {
                version: "1.0".to_owned(),
                canonical_version: "1".to_owned(),
                is_prerelease: false,
                requires_python: None,
                metadata_json: "{}".to_owned(),
            },
            file: NewFile {
                filename: format!("{}-1.0.tar.gz", name::normalize(project).replace('-', "_")),
                packagetype: "sdist".to_owned(),
                python_version: "source".to_owned(),
                size: 1,
                md5_digest: format!("md5-{project}"),
                sha256_digest: format!("sha-{project}"),
                blake2_256_digest: format!("b2-{project}"),
                path: format!("x/{project}"),
                comment_text: None,
                uploaded_via: None,
                requires_python: None,
                metadata_sha256: None,
                metadata_blake2_256: None,
            },
            submitted_by: "test".to_owned(),
            closed_release_after_micros: None,
            max_project_size: None,
            now_micros: 0,
        };
        let result = fixture.index.commit_upload(&upload).await.expect("commit");
        assert!(
            matches!(result, CommitResult::Published { .. }),
            "{result:?}"
        );
    }

    /// The project verdict of one call, or its identity refusal when nobody holds the token
    /// (and then no project verdict comes with it).
    async fn decide(
        verifier: &VerifierService,
        token: &str,
        project: &str,
    ) -> Result<UploadGrant, Refusal> {
        let verdicts = verifier
            .authorize(token, Some(project))
            .await
            .expect("verifier works");
        match verdicts.identity {
            Err(refusal) => {
                assert_eq!(
                    verdicts.project, None,
                    "no project verdict without identity"
                );
                Err(refusal)
            }
            Ok(_) => verdicts.project.expect("a project verdict"),
        }
    }

    async fn refusal(fixture: &Fixture, token: &str, project: &str) -> Refusal {
        decide(&fixture.verifier, token, project)
            .await
            .expect_err("must be refused")
    }

    /// Issue #12, finding 5: a granted upload that names itself comes back with a grant the
    /// worker can verify, binding the request, the holder and the verdict; an upload that
    /// names no upload id, or is denied, gets none.
    #[tokio::test]
    async fn a_granted_upload_carries_a_signed_grant_of_what_it_may_commit() {
        let fixture = fixture().await;
        let signer = wharf_proto::grant::UploadGrantSigner::generate().expect("key");
        let keys = wharf_proto::grant::UploadGrantKeys::new([signer.public_key()]);
        let verifier = VerifierService::new(
            Arc::clone(&fixture.index),
            VerifierSettings {
                prohibited_names: vec!["forbidden-name".to_owned()],
                upload_grants: Some(signer),
                token_keys: fixture.keys.clone(),
                ..VerifierSettings::default()
            },
        )
        .expect("verifier");
        let token = token_for(&fixture, "alice", &[], None).await;
        let request = AuthorizeUploadRequest {
            token: token.clone(),
            project_name: "Demo.Pkg".to_owned(),
            upload_id: "0190-upload".to_owned(),
            filename: "demo_pkg-1.0.tar.gz".to_owned(),
            version: "1.0".to_owned(),
            max_project_size: 1024,
        };
        let answer = verifier
            .authorize_upload(Request::new(request.clone()))
            .await
            .expect("answer")
            .into_inner();
        let verdicts = UploadVerdicts::try_from(answer).expect("verdicts");
        let alice = verdicts.identity.expect("alice");
        let grant = verdicts.project.expect("decided").expect("granted");
        let now = jiff::Timestamp::now().as_microsecond();
        let claims = keys.verify(grant.signed.as_ref(), now).expect("verifies");
        assert_eq!(claims.upload_id, "0190-upload");
        assert_eq!(claims.normalized_name, "demo-pkg");
        assert_eq!(claims.filename, "demo_pkg-1.0.tar.gz");
        assert_eq!(claims.version, "1.0");
        assert_eq!(claims.user_id, alice.user_id);
        assert!(claims.may_create_project);
        assert_eq!(claims.max_project_size, 1024);
        assert!(claims.expires_at_micros > now);

        let unnamed = verifier
            .authorize_upload(Request::new(AuthorizeUploadRequest {
                upload_id: String::new(),
                ..request.clone()
            }))
            .await
            .expect("answer")
            .into_inner();
        let unnamed = UploadVerdicts::try_from(unnamed).expect("verdicts");
        assert_eq!(
            unnamed.project.expect("decided").expect("granted").signed,
            None
        );
        let denied = verifier
            .authorize_upload(Request::new(AuthorizeUploadRequest {
                project_name: "forbidden-name".to_owned(),
                ..request
            }))
            .await
            .expect("answer")
            .into_inner();
        let denied = UploadVerdicts::try_from(denied).expect("verdicts");
        assert!(
            denied.project.expect("decided").is_err(),
            "denied, so nothing signed"
        );
    }

    #[tokio::test]
    async fn one_call_answers_who_and_whether() {
        let fixture = fixture().await;
        let token = token_for(&fixture, "alice", &[], None).await;
        let who = fixture
            .verifier
            .authorize(&token, None)
            .await
            .expect("verifier");
        let identity = who.identity.expect("alice holds the token");
        assert_eq!(identity.user_name, "alice");
        assert_eq!(identity.kind, "user");
        assert!(identity.signature_verified);
        assert_eq!(who.project, None, "no project named, none decided");

        let both = fixture
            .verifier
            .authorize(&token, Some("demo"))
            .await
            .expect("verifier");
        assert_eq!(both.identity, Ok(identity));
        assert!(
            both.project
                .expect("decided")
                .expect("granted")
                .may_create_project
        );
    }

    #[tokio::test]
    async fn unknown_and_malformed_tokens_are_invalid_auth() {
        let fixture = fixture().await;
        for token in [
            "",
            "pypi-",
            "pypi-garbage",
            "notpypi-AgEI",
            "pypi-AgEEdGVzdAIkMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwAAAGIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let rejection = refusal(&fixture, token, "demo").await;
            assert_eq!(rejection.status(), 403);
            assert_eq!(rejection.message, messages::INVALID_AUTH, "token {token:?}");
        }
    }

    #[tokio::test]
    async fn a_forged_signature_fails_verification() {
        let fixture = fixture().await;
        let token = token_for(&fixture, "alice", &[], None).await;
        let mut macaroon = wharf_macaroon::decode_token(&token, TOKEN_PREFIX).expect("decode");
        // A holder may add caveats, but cannot remove them: rebuilding with another key fails.
        let identifier = macaroon.identifier().to_vec();
        let forged =
            wharf_macaroon::Macaroon::new(macaroon.location(), &identifier, b"guessed key");
        let forged = wharf_macaroon::encode_token(TOKEN_PREFIX, &forged);
        let rejection = refusal(&fixture, &forged, "demo").await;
        assert_eq!(
            rejection.message,
            "Invalid API Token: signatures do not match"
        );
        // The identifier names a real token, so there is an identity (PyPI reports the bad
        // signature with the project check), but it is not verified: the gateway does not
        // count it against the real token's rate limit.
        let identity = fixture
            .verifier
            .authorize(&forged, None)
            .await
            .expect("verifier")
            .identity
            .expect("an identity");
        assert!(!identity.signature_verified);

        // A caveat the holder adds is honoured.
        macaroon.add_first_party_caveat(&Caveat::ProjectName(vec!["other".to_owned()]).to_bytes());
        let attenuated = wharf_macaroon::encode_token(TOKEN_PREFIX, &macaroon);
        let rejection = refusal(&fixture, &attenuated, "demo").await;
        assert_eq!(
            rejection.message,
            "Invalid API Token: project-scoped token is not valid for project: 'demo'"
        );
    }

    /// A raw connection to the fixture's SQLite file (what a copy of the database holds).
    async fn raw_database(fixture: &Fixture) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(fixture._dir.path().join("index.sqlite3")),
        )
        .await
        .expect("raw sqlite")
    }

    /// Every byte string of a token row that could serve as a key, as stored.
    async fn token_row_bytes(raw: &sqlx::SqlitePool, token_id: &str) -> Vec<Vec<u8>> {
        let (root_key, sealed, key_id): (Vec<u8>, Option<Vec<u8>>, Option<String>) =
            sqlx::query_as(
                "SELECT root_key, sealed_root_key, root_key_id FROM api_tokens WHERE id = ?1",
            )
            .bind(token_id)
            .fetch_one(raw)
            .await
            .expect("token row");
        let mut candidates = vec![root_key];
        if let Some(sealed) = sealed {
            // The whole value, and the part after the nonce.
            candidates.push(sealed[12..].to_vec());
            candidates.push(sealed);
        }
        candidates.extend(key_id.map(String::into_bytes));
        candidates
    }

    /// Issue #12, finding 12: the database alone (a backup) cannot forge a token. The row
    /// holds no clear root key, no byte string of the row signs a token that verifies, and
    /// the real root key (opened with the token key) appears nowhere in the database file.
    /// Before the fix the row's `root_key` column was the root key, and a token signed with
    /// it verified.
    #[tokio::test]
    async fn a_copy_of_the_database_forges_no_token() {
        let fixture = fixture().await;
        let genuine = token_for(&fixture, "alice", &[], None).await;
        let macaroon = wharf_macaroon::decode_token(&genuine, TOKEN_PREFIX).expect("decode");
        let token_id = std::str::from_utf8(macaroon.identifier())
            .expect("utf-8")
            .to_owned();
        assert!(
            decide(&fixture.verifier, &genuine, "brand-new")
                .await
                .is_ok()
        );

        let raw = raw_database(&fixture).await;
        for candidate in token_row_bytes(&raw, &token_id).await {
            let forged =
                wharf_macaroon::Macaroon::new(macaroon.location(), token_id.as_bytes(), &candidate);
            let forged = wharf_macaroon::encode_token(TOKEN_PREFIX, &forged);
            let rejection = refusal(&fixture, &forged, "brand-new").await;
            assert_eq!(
                rejection.message,
                "Invalid API Token: signatures do not match"
            );
        }
        raw.close().await;

        let record = fixture
            .index
            .find_token(&token_id)
            .await
            .expect("find")
            .expect("row");
        assert!(record.root_key.is_empty(), "the clear column is empty");
        let root_key = fixture
            .keys
            .root_key(&record.stored_root_key())
            .expect("opens with the token key");
        assert!(macaroon.verify_signature(&root_key));
        let mut database = Vec::new();
        for suffix in ["", "-wal"] {
            let path = fixture._dir.path().join(format!("index.sqlite3{suffix}"));
            database.extend(std::fs::read(path).unwrap_or_default());
        }
        assert!(
            !database
                .windows(root_key.len())
                .any(|window| window == root_key),
            "the root key is not in the database file"
        );
    }

    /// Issue #12, finding 12: a token written before sealing (clear root key) still verifies
    /// after the start-up pass has sealed its row, and the pass is idempotent.
    #[tokio::test]
    async fn tokens_stored_in_the_clear_still_verify_after_start_up_sealing() {
        let fixture = fixture().await;
        let alice = fixture.index.create_user("alice", 0).await.expect("user");
        let token_id = uuid::Uuid::new_v4().to_string();
        let root_key = [4_u8; 32];
        let raw = raw_database(&fixture).await;
        // The row as the code before the fix wrote it.
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, description, root_key, caveats, created_at) \
             VALUES (?1, ?2, '', ?3, '[]', 0)",
        )
        .bind(&token_id)
        .bind(&alice.id)
        .bind(root_key.as_slice())
        .execute(&raw)
        .await
        .expect("clear row");
        let mut macaroon = wharf_macaroon::Macaroon::new("wharf", token_id.as_bytes(), &root_key);
        macaroon.add_first_party_caveat(&Caveat::RequestUser(alice.id.clone()).to_bytes());
        let token = wharf_macaroon::encode_token(TOKEN_PREFIX, &macaroon);

        let sealed = prepare_token_keys(fixture.index.as_ref(), &fixture.keys)
            .await
            .expect("start-up sealing");
        assert_eq!(sealed, 1);
        assert_eq!(
            prepare_token_keys(fixture.index.as_ref(), &fixture.keys)
                .await
                .expect("again"),
            0,
            "nothing left to seal"
        );
        assert!(
            !token_row_bytes(&raw, &token_id)
                .await
                .contains(&root_key.to_vec()),
            "the clear key is gone from the row"
        );
        raw.close().await;
        let grant = decide(&fixture.verifier, &token, "alices-new-project")
            .await
            .expect("the old token still verifies");
        assert!(grant.may_create_project);
    }

    /// Issue #12, finding 12: a rotation (new key first in the file, every row re-sealed,
    /// then the old key removed) keeps every token valid, also for a verifier started
    /// afterwards with the new file only; rows sealed under a key that is not configured
    /// refuse to start, naming the key.
    #[tokio::test]
    async fn rotating_the_token_key_keeps_every_token_valid() {
        let fixture = fixture().await;
        let key_file = fixture._dir.path().join("token-key");
        let (keys, created) = TokenKeys::from_file_or_create(&key_file).expect("key file");
        assert!(created);
        let verifier_with = |keys: &TokenKeys| {
            VerifierService::new(
                Arc::clone(&fixture.index),
                VerifierSettings {
                    token_keys: keys.clone(),
                    ..VerifierSettings::default()
                },
            )
            .expect("verifier")
        };
        let running = verifier_with(&keys);
        fixture.index.create_user("alice", 0).await.expect("user");
        let request = TokenRequest {
            user_name: "alice".to_owned(),
            location: "test".to_owned(),
            ..TokenRequest::default()
        };
        let (_, before) = mint_user_token(fixture.index.as_ref(), &keys, &request, 0)
            .await
            .expect("token");
        let old_id = keys.sealing_key_id();

        let new_id = add_key_to_file(&key_file).expect("add key");
        assert_eq!(
            reseal_root_keys(fixture.index.as_ref(), &keys)
                .await
                .expect("reseal"),
            1
        );
        let (_, during) = mint_user_token(fixture.index.as_ref(), &keys, &request, 0)
            .await
            .expect("token");
        for token in [&before, &during] {
            decide(&running, token, "p1").await.expect("valid during");
        }
        assert_eq!(
            keep_only_sealing_key(&key_file).expect("retire"),
            vec![old_id.clone()]
        );

        let restarted_keys = TokenKeys::from_file(&key_file).expect("new file");
        assert_eq!(restarted_keys.key_ids(), vec![new_id]);
        prepare_token_keys(fixture.index.as_ref(), &restarted_keys)
            .await
            .expect("every row is under a configured key");
        let restarted = verifier_with(&restarted_keys);
        for token in [&before, &during] {
            decide(&running, token, "p1")
                .await
                .expect("valid after, running");
            decide(&restarted, token, "p1")
                .await
                .expect("valid after, restarted");
        }

        // A verifier given another key file refuses to start, and says which key is missing.
        let error = prepare_token_keys(fixture.index.as_ref(), &TokenKeys::ephemeral())
            .await
            .expect_err("rows under an unconfigured key");
        let message = error.to_string();
        assert!(
            message.contains(&restarted_keys.sealing_key_id())
                && message.contains("--token-key-file"),
            "{message}"
        );
        // And asked anyway, it answers "unavailable", not "invalid token".
        let stranger = verifier_with(&TokenKeys::ephemeral());
        assert!(matches!(
            stranger.authorize(&before, None).await,
            Err(VerifierError::TokenKey(TokenKeyError::UnknownKeyId { .. }))
        ));
    }

    /// A minted (publisher) token stored in the index with `root_key`, and its text.
    async fn minted_token(fixture: &Fixture, root_key: &[u8]) -> (String, String) {
        crate::test_support::store_minted_token(
            fixture.index.as_ref(),
            &fixture.keys,
            Vec::new(),
            root_key,
        )
        .await
    }

    #[tokio::test]
    async fn burning_needs_the_tokens_signature_not_just_its_identifier() {
        let fixture = fixture().await;
        let (id, genuine) = minted_token(&fixture, &[7; 32]).await;
        // The real identifier (public in `oidc.minted` events) under a guessed key.
        let forged = wharf_macaroon::Macaroon::new("wharf", id.as_bytes(), b"guessed key");
        let forged = wharf_macaroon::encode_token(TOKEN_PREFIX, &forged);
        fixture
            .verifier
            .burn_minted_token(&forged)
            .await
            .expect("verifier");
        assert!(
            fixture.index.find_token(&id).await.expect("find").is_some(),
            "a forged token revoked nothing"
        );
        fixture
            .verifier
            .burn_minted_token(&genuine)
            .await
            .expect("verifier");
        assert!(
            fixture.index.find_token(&id).await.expect("find").is_none(),
            "the genuine token is burnt"
        );
    }

    #[tokio::test]
    async fn a_user_token_may_create_a_new_project() {
        let fixture = fixture().await;
        let token = token_for(&fixture, "alice", &[], None).await;
        let verdicts = fixture
            .verifier
            .authorize(&token, Some("Brand.New"))
            .await
            .expect("verifier");
        assert_eq!(verdicts.identity.expect("identity").user_name, "alice");
        let grant = verdicts.project.expect("decided").expect("granted");
        assert!(grant.may_create_project);
        assert!(grant.project_id.is_empty());
        assert_eq!(grant.project_total_size, 0);
    }

    #[tokio::test]
    async fn new_project_names_follow_pypi_rules() {
        let fixture = fixture().await;
        let token = token_for(&fixture, "alice", &[], None).await;
        let owner = fixture
            .index
            .find_user_by_name("alice")
            .await
            .expect("lookup")
            .expect("alice");
        create_project(&fixture, "existing-project", &owner.id).await;

        let invalid = refusal(&fixture, &token, "-bad-").await;
        assert_eq!(invalid.status(), 400);
        let stdlib = refusal(&fixture, &token, "asyncio").await;
        assert!(
            stdlib
                .message
                .contains("conflict with Python Standard Library module name"),
            "{}",
            stdlib.message
        );
        let prohibited = refusal(&fixture, &token, "Forbidden_Name").await;
        assert!(
            prohibited.message.contains("isn't allowed"),
            "{}",
            prohibited.message
        );
        let similar = refusal(&fixture, &token, "existingproject").await;
        assert!(
            similar
                .message
                .contains("too similar to an existing project"),
            "{}",
            similar.message
        );
    }

    #[tokio::test]
    async fn only_owners_upload_to_an_existing_project() {
        let fixture = fixture().await;
        let owner_token = token_for(&fixture, "alice", &[], None).await;
        let other_token = token_for(&fixture, "mallory", &[], None).await;
        let owner = fixture
            .index
            .find_user_by_name("alice")
            .await
            .expect("lookup")
            .expect("alice");
        create_project(&fixture, "Alices-Project", &owner.id).await;

        let grant = decide(&fixture.verifier, &owner_token, "alices.project")
            .await
            .expect("owner may upload");
        assert!(!grant.may_create_project);
        assert!(!grant.project_id.is_empty());
        // The project's size comes with the grant (one file of 1 byte), so the gateway does
        // not read the project again for its size limit.
        assert_eq!(grant.project_total_size, 1);

        let rejection = refusal(&fixture, &other_token, "alices-project").await;
        assert_eq!(rejection.status(), 403);
        assert_eq!(
            rejection.message,
            "The user 'mallory' isn't allowed to upload to project 'Alices-Project'. \
             See https://pypi.org/help/#project-name for more information."
        );
    }

    #[tokio::test]
    async fn project_scoped_and_expired_tokens() {
        let fixture = fixture().await;
        let scoped = token_for(&fixture, "alice", &["Project.One"], None).await;
        decide(&fixture.verifier, &scoped, "project-one")
            .await
            .expect("in scope");
        let rejection = refusal(&fixture, &scoped, "project-two").await;
        assert_eq!(
            rejection.message,
            "Invalid API Token: project-scoped token is not valid for project: 'project-two'"
        );

        let expired = token_for(&fixture, "alice", &[], Some(1)).await;
        let rejection = refusal(&fixture, &expired, "anything").await;
        assert_eq!(rejection.message, "Invalid API Token: token is expired");
    }

    #[tokio::test]
    async fn a_revoked_token_stops_working() {
        let fixture = fixture().await;
        let token = token_for(&fixture, "alice", &[], None).await;
        let tokens = fixture.index.list_tokens().await.expect("list");
        assert!(
            fixture
                .index
                .delete_token(&tokens[0].id)
                .await
                .expect("delete")
        );
        assert_eq!(
            refusal(&fixture, &token, "demo").await.message,
            messages::INVALID_AUTH
        );
    }
    /// An index whose first project lookup is stale (answers "no such project"), as when a
    /// concurrent upload creates the project right after the lookup.
    #[derive(Debug)]
    struct StaleFirstLookup {
        inner: Arc<dyn Index>,
        stale: std::sync::atomic::AtomicBool,
        /// Token lookups: the holder is found once per call, even when the decision is retried.
        token_lookups: std::sync::atomic::AtomicUsize,
    }

    /// Only the port it changes, by hand; the others go to the real index.
    #[async_trait::async_trait]
    impl Projects for StaleFirstLookup {
        async fn find_project(&self, normalized_name: &str) -> Result<Option<Project>, IndexError> {
            if self.stale.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Ok(None);
            }
            self.inner.find_project(normalized_name).await
        }

        async fn find_projects_by_ultranormalized(
            &self,
            ultranormalized_name: &str,
        ) -> Result<Vec<Project>, IndexError> {
            self.inner
                .find_projects_by_ultranormalized(ultranormalized_name)
                .await
        }

        async fn list_projects(&self) -> Result<Vec<Project>, IndexError> {
            self.inner.list_projects().await
        }

        async fn create_project_by_operator(
            &self,
            project: &wharf_index::ProjectTarget,
            owner_id: &str,
            submitted_by: &str,
            now_micros: i64,
        ) -> Result<Option<String>, IndexError> {
            self.inner
                .create_project_by_operator(project, owner_id, submitted_by, now_micros)
                .await
        }
    }

    /// Counts token lookups; the rest goes to the real index.
    #[async_trait::async_trait]
    impl Accounts for StaleFirstLookup {
        async fn create_user(&self, name: &str, now_micros: i64) -> Result<User, IndexError> {
            self.inner.create_user(name, now_micros).await
        }

        async fn find_user_by_name(&self, name: &str) -> Result<Option<User>, IndexError> {
            self.inner.find_user_by_name(name).await
        }

        async fn find_user(&self, id: &str) -> Result<Option<User>, IndexError> {
            self.inner.find_user(id).await
        }

        async fn insert_token(&self, token: &NewToken) -> Result<(), IndexError> {
            self.inner.insert_token(token).await
        }

        async fn list_root_keys(&self) -> Result<Vec<wharf_index::StoredRootKey>, IndexError> {
            self.inner.list_root_keys().await
        }

        async fn store_sealed_root_key(
            &self,
            id: &str,
            sealed: &wharf_index::SealedRootKey,
        ) -> Result<bool, IndexError> {
            self.inner.store_sealed_root_key(id, sealed).await
        }

        async fn find_token(&self, id: &str) -> Result<Option<TokenRecord>, IndexError> {
            self.token_lookups
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.find_token(id).await
        }

        async fn list_tokens(&self) -> Result<Vec<TokenSummary>, IndexError> {
            self.inner.list_tokens().await
        }

        async fn delete_token(&self, id: &str) -> Result<bool, IndexError> {
            self.inner.delete_token(id).await
        }

        async fn touch_token(&self, id: &str, now_micros: i64) -> Result<(), IndexError> {
            self.inner.touch_token(id, now_micros).await
        }
    }

    wharf_index::delegate_ports!(StaleFirstLookup => inner:
        Health, Roles, Releases, Uploads, TrustedPublishing, RateLimits, AuditLog);

    #[tokio::test]
    async fn a_project_created_concurrently_is_not_too_similar_to_itself() {
        let fixture = fixture().await;
        let token = token_for(&fixture, "alice", &[], None).await;
        let owner = fixture
            .index
            .find_user_by_name("alice")
            .await
            .expect("lookup")
            .expect("alice");
        create_project(&fixture, "Raced_Project", &owner.id).await;
        let stale = Arc::new(StaleFirstLookup {
            inner: Arc::clone(&fixture.index),
            stale: std::sync::atomic::AtomicBool::new(true),
            token_lookups: std::sync::atomic::AtomicUsize::new(0),
        });
        let verifier = VerifierService::new(
            Arc::clone(&stale) as Arc<dyn Index>,
            VerifierSettings {
                token_keys: fixture.keys.clone(),
                ..VerifierSettings::default()
            },
        )
        .expect("verifier");
        let grant = decide(&verifier, &token, "raced_project")
            .await
            .expect("the owner may upload to the project that now exists");
        assert!(!grant.may_create_project);
        assert!(!grant.project_id.is_empty());
        assert_eq!(
            stale
                .token_lookups
                .load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the second decision reuses the holder found by the first"
        );
    }
}
