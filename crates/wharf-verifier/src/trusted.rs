//! Trusted publishing: exchanging a CI system's OIDC identity token for a short-lived API
//! token (spec §b), and revoking such tokens early.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tracing::instrument;
use wharf_bus::{PublicEvent, UploadBus};
use wharf_core::messages::trusted_publishing as tp;
use wharf_core::name;
use wharf_index::{
    AuditLog, Index, IndexError, JtiClaim, NewToken, ProjectTarget, PublisherRecord, RateLimit,
    ReifyResult,
};
use wharf_macaroon::Caveat;
use wharf_oidc::{
    Candidate, Claims, ErrorCode, Issuer, IssuerKind, KeyStore, NoMatch, PublisherPolicy, Refusal,
};

use crate::VerifierError;

/// Operator settings of trusted publishing.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// Whether the exchange is offered at all.
    pub enabled: bool,
    /// The audience tokens must be issued for (PyPI: `pypi`; Wharf: `wharf`).
    pub audience: String,
    /// Lifetime of minted tokens unless a publisher sets its own (PyPI: 15 minutes).
    pub default_token_ttl: Duration,
    /// The longest lifetime a publisher may set.
    pub max_token_ttl: Duration,
    /// The macaroon location written into minted tokens.
    pub location: String,
    /// Exchanges allowed per identity (issuer and `sub`), shared through the index; `None`:
    /// no limit.
    pub identity_rate_limit: Option<RateLimit>,
}

impl Default for OidcSettings {
    fn default() -> Self {
        OidcSettings {
            enabled: true,
            audience: "wharf".to_owned(),
            default_token_ttl: Duration::from_secs(900),
            max_token_ttl: Duration::from_secs(6 * 3600),
            location: "wharf".to_owned(),
            identity_rate_limit: None,
        }
    }
}

/// A minted token and its expiry (unix seconds).
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: String,
    pub expires: i64,
}

/// Trusted publishing state: settings, the JWKS cache, and where audit events go.
pub(crate) struct TrustedPublishing {
    pub(crate) settings: OidcSettings,
    pub(crate) keys: Arc<KeyStore>,
    pub(crate) events: Option<Arc<dyn UploadBus>>,
    /// Seals the minted tokens' root keys.
    pub(crate) token_keys: crate::TokenKeys,
}

impl std::fmt::Debug for TrustedPublishing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedPublishing")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The publisher a token matched, parsed.
struct MatchedPublisher {
    record: PublisherRecord,
    matched: wharf_oidc::Matched,
}

/// A refused exchange: what the caller is told, and what only the audit trail keeps.
struct Refused {
    refusal: Refusal,
    /// Explain mode against every publisher of the issuer (operators only; never answered
    /// nor published on the bus): `<label>: claim 'a' expected 'x'; …`.
    closest_publisher: Option<String>,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Refused {
        Refused {
            refusal,
            closest_publisher: None,
        }
    }
}

impl From<NoMatch> for Refused {
    fn from(no_match: NoMatch) -> Refused {
        Refused {
            refusal: no_match.refusal,
            closest_publisher: no_match.closest,
        }
    }
}

/// The audit kind (and public event) of a minted token.
const MINTED_EVENT: &str = "oidc.minted";

/// The claim on `claims`' `jti` (none without one), kept until the token could no longer
/// pass verification (exp + leeway + margin).
fn jti_claim(issuer: &Issuer, claims: &Claims, now: i64) -> Option<JtiClaim> {
    let jti = wharf_oidc::jti_of(claims)?;
    Some(JtiClaim {
        issuer_url: issuer.url.clone(),
        jti: jti.to_owned(),
        expires_at: wharf_oidc::expires_at(claims).unwrap_or(now) + 30 + 5,
        now,
    })
}

/// A label for explain mode and `publisher list`, from the policy alone.
pub fn publisher_label(policy: &PublisherPolicy) -> String {
    match policy {
        PublisherPolicy::GitHub(github) => format!(
            "github:{}/{} {}",
            github.owner, github.repository, github.workflow
        ),
        PublisherPolicy::GitLab(gitlab) => format!(
            "gitlab:{}/{} {}",
            gitlab.namespace, gitlab.project, gitlab.workflow_filepath
        ),
        PublisherPolicy::Google(google) => format!("google:{}", google.email),
        PublisherPolicy::ActiveState(state) => {
            format!("activestate:{}/{}", state.organization, state.project)
        }
        PublisherPolicy::Generic(generic) => {
            let sub = generic.claims().get("sub").map_or("", String::as_str);
            format!("generic:{sub}")
        }
    }
}

impl TrustedPublishing {
    /// The issuers tokens are accepted from: the built-in ones, then the operator's (read on
    /// every exchange, so adding or removing one needs no restart).
    async fn issuers(
        &self,
        index: &dyn wharf_index::TrustedPublishing,
    ) -> Result<Vec<Issuer>, IndexError> {
        let mut issuers = wharf_oidc::builtin_issuers();
        for record in index.list_issuers().await? {
            let Ok(kind) = record.kind.parse::<IssuerKind>() else {
                tracing::warn!(issuer = %record.name, kind = %record.kind, "skipping issuer of unknown kind");
                continue;
            };
            issuers.push(Issuer {
                name: record.name,
                kind,
                url: record.url,
                allow_http: record.allow_http,
                builtin: false,
            });
        }
        Ok(issuers)
    }

    async fn audit(&self, index: &dyn AuditLog, kind: &str, detail: serde_json::Value) {
        self.audit_with_private(index, kind, detail.clone(), detail)
            .await;
    }

    /// Records `recorded` in the audit trail and publishes `announced` (a subset of it: the
    /// bus is a public stream) as its event.
    async fn audit_with_private(
        &self,
        index: &dyn AuditLog,
        kind: &str,
        recorded: serde_json::Value,
        announced: serde_json::Value,
    ) {
        let now = jiff::Timestamp::now().as_microsecond();
        if let Err(error) = index.record_audit(kind, &recorded.to_string(), now).await {
            tracing::warn!(error = %error, kind, "could not record the audit event");
        }
        self.announce(kind, announced.to_string()).await;
    }

    /// Publishes an audit event on the bus (when there is one) as `wharf.events.<kind>`.
    async fn announce(&self, kind: &str, detail: String) {
        if let Some(bus) = &self.events {
            let event = PublicEvent {
                subject: format!("wharf.events.{kind}"),
                payload: detail.into_bytes().into(),
            };
            if let Err(error) = bus.publish_event(event).await {
                tracing::warn!(error = %error, kind, "could not publish the audit event");
            }
        }
    }

    /// Exchanges an OIDC token for an API token, or says why not (PyPI's codes and texts).
    #[instrument(skip_all, name = "verifier.mint_token", fields(wharf.oidc.publisher = tracing::field::Empty, wharf.oidc.error = tracing::field::Empty))]
    pub(crate) async fn mint(
        &self,
        index: &dyn Index,
        settings: &crate::VerifierSettings,
        jwt: &str,
    ) -> Result<Result<Minted, Refusal>, VerifierError> {
        match self.try_mint(index, settings, jwt).await? {
            Ok(minted) => Ok(Ok(minted)),
            Err(refused) => {
                self.record_refused(index, &refused).await;
                Ok(Err(refused.refusal))
            }
        }
    }

    /// Audits a refused exchange (with its PyPI error code).
    pub(crate) async fn record_refusal(&self, index: &dyn AuditLog, error: &Refusal) {
        self.record_refused(index, &Refused::from(error.clone()))
            .await;
    }

    /// Audits a refused exchange: the code and the text the caller got, and in the audit
    /// trail only, the closest publisher of any project (for operators debugging a publisher).
    async fn record_refused(&self, index: &dyn AuditLog, refused: &Refused) {
        let error = &refused.refusal;
        tracing::Span::current().record("wharf.oidc.error", error.code.as_str());
        let announced = json!({ "code": error.code.as_str(), "description": error.message });
        let mut recorded = announced.clone();
        if let (Some(closest), Some(detail)) =
            (&refused.closest_publisher, recorded.as_object_mut())
        {
            detail.insert("closest_publisher".to_owned(), json!(closest));
        }
        self.audit_with_private(index, "oidc.mint_refused", recorded, announced)
            .await;
    }

    async fn try_mint(
        &self,
        index: &dyn Index,
        settings: &crate::VerifierSettings,
        jwt: &str,
    ) -> Result<Result<Minted, Refused>, VerifierError> {
        if !self.settings.enabled {
            return Ok(Err(Refusal::new(
                ErrorCode::NotEnabled,
                "trusted publishing functionality not enabled",
            )
            .into()));
        }
        let unverified = match wharf_oidc::peek_unverified(jwt) {
            Ok(unverified) => unverified,
            Err(error) => return Ok(Err(error.into())),
        };
        let issuers = self.issuers(index).await?;
        let Some(issuer) = issuers
            .into_iter()
            .find(|issuer| issuer.url == unverified.issuer)
        else {
            return Ok(Err(Refusal::new(
                ErrorCode::InvalidPayload,
                "unknown trusted publishing issuer",
            )
            .into()));
        };
        let now = jiff::Timestamp::now().as_second();
        let claims =
            match wharf_oidc::verify_token(jwt, &issuer, &self.settings.audience, &self.keys, now)
                .await
            {
                Ok(claims) => claims,
                Err(error) => return Ok(Err(error.into())),
            };

        // After verification, so that only the identity's own tokens use up its allowance.
        if let Some(refused) = self.limit_identity(index, &issuer, &claims).await? {
            return Ok(Err(refused.into()));
        }

        let publishers = index.publishers_for_issuer(&issuer.url).await?;
        let (pending, active): (Vec<_>, Vec<_>) = publishers
            .into_iter()
            .partition(|publisher| publisher.pending_project_name.is_some());

        // PyPI searches the pending publishers first.
        if let Ok(found) = find_publisher(&pending, &issuer, &claims) {
            if let Err(error) = self.claim_jti(index, &issuer, &claims, now).await? {
                return Ok(Err(error.into()));
            }
            let project_name = found
                .record
                .pending_project_name
                .clone()
                .unwrap_or_default();
            if let Err(rejection) =
                name::check_new_project_name(&project_name, &settings.prohibited_names)
            {
                return Ok(Err(Refusal::new(
                    ErrorCode::InvalidPayload,
                    rejection.message,
                )
                .into()));
            }
            // PyPI's look-alike refusal, here early and again under the commit's lock.
            let too_similar =
                || tp::invalid_payload(name::too_similar_rejection(&project_name).message);
            let ultranormalized = name::ultranormalize(&project_name);
            let similar = index
                .find_projects_by_ultranormalized(&ultranormalized)
                .await?;
            if similar
                .iter()
                .any(|project| project.normalized_name != name::normalize(&project_name))
            {
                return Ok(Err(too_similar().into()));
            }
            let target = ProjectTarget {
                name: project_name.clone(),
                normalized_name: name::normalize(&project_name),
                ultranormalized_name: ultranormalized,
                create_with_owner: found.record.pending_user_id.clone(),
            };
            let now_micros = jiff::Timestamp::now().as_microsecond();
            match index
                .reify_pending_publisher(&found.record.id, &target, now_micros)
                .await?
            {
                // The project exists, or a concurrent exchange (of this publisher, or of a
                // look-alike one that removed it) won the race since our lookup: either way
                // PyPI's refusal, audited, not an outage.
                ReifyResult::ProjectExists | ReifyResult::NoLongerPending => {
                    return Ok(Err(tp::project_already_exists().into()));
                }
                // A look-alike project was created since the check above.
                ReifyResult::NameTooSimilar => return Ok(Err(too_similar().into())),
                ReifyResult::Created { project_id } => {
                    self.audit(
                        index,
                        "oidc.publisher_activated",
                        json!({ "publisher": found.record.id, "project": project_name, "project_id": project_id }),
                    )
                    .await;
                }
            }
            let Some(record) = index.find_publisher(&found.record.id).await? else {
                return Ok(Err(Refusal::new(
                    ErrorCode::InvalidPublisher,
                    "valid token, but no corresponding publisher (the publisher was removed)",
                )
                .into()));
            };
            let found = MatchedPublisher {
                record,
                matched: found.matched,
            };
            return Ok(self
                .issue(index, found, now, None)
                .await?
                .map_err(Refused::from));
        }

        let found = match find_publisher(&active, &issuer, &claims) {
            Ok(found) => found,
            Err(error) => return Ok(Err(error)),
        };
        // The token id is claimed in the transaction that stores the minted token.
        let claim = jti_claim(&issuer, &claims, now);
        Ok(self
            .issue(index, found, now, claim)
            .await?
            .map_err(Refused::from))
    }

    /// Counts the exchange against its identity (issuer and `sub`); the refusal when over.
    async fn limit_identity(
        &self,
        index: &dyn Index,
        issuer: &Issuer,
        claims: &Claims,
    ) -> Result<Option<Refusal>, VerifierError> {
        let (Some(limit), Some(subject)) = (
            self.settings.identity_rate_limit,
            claims.get_str("sub").filter(|sub| !sub.is_empty()),
        ) else {
            return Ok(None);
        };
        let now = jiff::Timestamp::now().as_microsecond();
        let key = format!("{}\n{subject}", issuer.url);
        let verdict = index
            .rate_limit("mint-token-identity", &key, limit, now)
            .await?;
        Ok(verdict.retry_after_seconds(now).map(tp::rate_limited))
    }

    /// Claims the token's `jti` so that the same JWT is never exchanged twice.
    async fn claim_jti(
        &self,
        index: &dyn Index,
        issuer: &Issuer,
        claims: &Claims,
        now: i64,
    ) -> Result<Result<(), Refusal>, VerifierError> {
        let Some(claim) = jti_claim(issuer, claims, now) else {
            return Ok(Ok(()));
        };
        if index
            .claim_jti(&claim.issuer_url, &claim.jti, claim.expires_at, claim.now)
            .await?
        {
            Ok(Ok(()))
        } else {
            Ok(Err(tp::reused_token()))
        }
    }

    /// Mints the API token for a matched, active publisher; with `claim`, claims the token
    /// id in the same transaction (refused if it was used before).
    async fn issue(
        &self,
        index: &dyn Index,
        found: MatchedPublisher,
        now: i64,
        claim: Option<JtiClaim>,
    ) -> Result<Result<Minted, Refusal>, VerifierError> {
        let MatchedPublisher { record, matched } = found;
        tracing::Span::current().record("wharf.oidc.publisher", record.id.as_str());
        if let Some(owner_id) = &matched.pin_owner_id
            && let Ok(PublisherPolicy::GitHub(mut github)) =
                serde_json::from_str::<PublisherPolicy>(&record.policy)
            && github.owner_id.is_none()
        {
            // First successful exchange: from now on only this owner id is accepted, which
            // defeats a re-registered (resurrected) account of the same name.
            github.owner_id = Some(owner_id.clone());
            let policy = PublisherPolicy::GitHub(github);
            if let Ok(policy_json) = serde_json::to_string(&policy) {
                index
                    .update_publisher_policy(&record.id, &policy_json, &record.label)
                    .await?;
                self.audit(
                    index,
                    "oidc.publisher_pinned",
                    json!({ "publisher": record.id, "owner_id": owner_id }),
                )
                .await;
            }
        }

        let requested = record
            .token_ttl_seconds
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map_or(self.settings.default_token_ttl, Duration::from_secs);
        let ttl = requested.min(self.settings.max_token_ttl);
        let expires = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let caveats = [
            Caveat::OidcPublisher {
                publisher_id: record.id.clone(),
                oidc_claims: None,
            },
            Caveat::ProjectId(record.project_ids.clone()),
            Caveat::Expiration {
                expires_at: expires,
                not_before: now,
            },
        ];
        let token_id = uuid::Uuid::new_v4().to_string();
        let mut root_key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut root_key);
        let token = wharf_macaroon::mint(&self.settings.location, &token_id, &root_key, &caveats);
        let new_token = NewToken {
            id: token_id.clone(),
            user_id: None,
            publisher_id: Some(record.id.clone()),
            additional: Some(json!({ "oidc": matched.stored_claims }).to_string()),
            description: format!("trusted publishing: {}", record.label),
            root_key: self.token_keys.seal(&token_id, &root_key),
            caveats: Vec::new(),
            created_at: now.saturating_mul(1_000_000),
            expires_at: Some(expires),
        };
        let detail = json!({
            "publisher": record.id,
            "label": record.label,
            "token_id": token_id,
            "projects": record.project_ids,
            "expires": expires,
            "publisher_url": matched.publisher_url,
        })
        .to_string();
        let now_micros = jiff::Timestamp::now().as_microsecond();
        if !index
            .record_minted_token(
                claim.as_ref(),
                &new_token,
                MINTED_EVENT,
                &detail,
                now_micros,
            )
            .await?
        {
            return Ok(Err(tp::reused_token()));
        }
        self.announce(MINTED_EVENT, detail).await;
        Ok(Ok(Minted { token, expires }))
    }

    /// Revokes the minted token `token_id`, whose holder the caller has verified; answers
    /// nothing either way (PyPI always says 202).
    #[instrument(skip_all, name = "verifier.burn_token")]
    pub(crate) async fn burn(
        &self,
        index: &dyn Index,
        token_id: &str,
    ) -> Result<(), VerifierError> {
        if index.delete_publisher_token(token_id).await? {
            self.audit(index, "oidc.burned", json!({ "token_id": token_id }))
                .await;
        }
        Ok(())
    }
}

/// Matches claims against publishers (skipping any whose stored policy cannot be read).
fn find_publisher(
    publishers: &[PublisherRecord],
    issuer: &Issuer,
    claims: &Claims,
) -> Result<MatchedPublisher, Refused> {
    let policies: Vec<(usize, PublisherPolicy)> = publishers
        .iter()
        .enumerate()
        .filter_map(|(position, publisher)| {
            match serde_json::from_str::<PublisherPolicy>(&publisher.policy) {
                Ok(policy) => Some((position, policy)),
                Err(error) => {
                    tracing::error!(publisher = %publisher.id, error = %error, "unreadable publisher policy");
                    None
                }
            }
        })
        .collect();
    let candidates: Vec<Candidate<'_>> = policies
        .iter()
        .map(|(position, policy)| Candidate {
            id: &publishers[*position].id,
            label: &publishers[*position].label,
            policy,
        })
        .collect();
    let matched = wharf_oidc::match_publisher(&candidates, issuer, claims)?;
    let record = publishers
        .iter()
        .find(|publisher| publisher.id == matched.id)
        .cloned()
        .ok_or_else(|| {
            Refusal::new(
                ErrorCode::InvalidPublisher,
                "valid token, but no corresponding publisher",
            )
        })?;
    Ok(MatchedPublisher { record, matched })
}
