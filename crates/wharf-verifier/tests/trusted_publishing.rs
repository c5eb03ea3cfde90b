//! The verifier's exchange with real signatures over a real (SQLite) index, through test
//! doubles that record the audit trail and construct a lost race deterministically
//! (issue #12, findings 4 and 9).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use wharf_core::name::{normalize, ultranormalize};
use wharf_index::prelude::*;
use wharf_index::{IndexError, NewPublisher, Project, ProjectTarget, ReifyResult};
use wharf_index_sqlite::SqliteIndex;
use wharf_oidc::jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use wharf_oidc::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use wharf_oidc::{
    ErrorCode, FetchError, GITHUB_ISSUER_URL, GitHubPolicy, Issuer, JwksFetcher, KeyStore,
    PublisherPolicy, Refusal,
};
use wharf_verifier::{VerifierService, VerifierSettings, publisher_label};

/// wharf-oidc's RSA test key (the JWKS below serves its public half).
const RSA_KEY: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../wharf-oidc/tests/fixtures/rsa_issuer.pem"
));
const KID: &str = "k1";

fn signing_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_KEY).expect("fixture RSA key")
}

/// Serves the fixture key for every issuer.
struct FixtureKeys;

#[async_trait]
impl JwksFetcher for FixtureKeys {
    async fn fetch(&self, _issuer: &Issuer) -> Result<JwkSet, FetchError> {
        let mut jwk = Jwk::from_encoding_key(&signing_key(), Algorithm::RS256).expect("jwk");
        jwk.common.key_id = Some(KID.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(JwkSet { keys: vec![jwk] })
    }
}

/// The index, recording every audit row, and (when armed) letting a concurrent exchange
/// reify a pending publisher right after the verifier looked it up: the moment the verifier
/// checks the project name, just before its own reify.
#[derive(Debug)]
struct Double {
    inner: Arc<dyn Index>,
    audit: Mutex<Vec<(String, Value)>>,
    /// `(publisher, project)` the concurrent winner reifies, once.
    winner: Mutex<Option<(String, String)>>,
    won: AtomicBool,
}

#[async_trait]
impl AuditLog for Double {
    async fn record_audit(
        &self,
        kind: &str,
        detail: &str,
        now_micros: i64,
    ) -> Result<(), IndexError> {
        self.audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((kind.to_owned(), serde_json::from_str(detail).expect("JSON")));
        self.inner.record_audit(kind, detail, now_micros).await
    }
}

#[async_trait]
impl Projects for Double {
    async fn find_project(&self, normalized_name: &str) -> Result<Option<Project>, IndexError> {
        self.inner.find_project(normalized_name).await
    }

    async fn find_projects_by_ultranormalized(
        &self,
        ultranormalized_name: &str,
    ) -> Result<Vec<Project>, IndexError> {
        let winner = self
            .winner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((publisher, project)) = winner {
            let result = self
                .inner
                .reify_pending_publisher(&publisher, &target(&project), 1)
                .await?;
            assert!(matches!(result, ReifyResult::Created { .. }), "{result:?}");
            self.won.store(true, Ordering::SeqCst);
        }
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

wharf_index::delegate_ports!(Double => inner:
    Health, Accounts, Roles, Releases, Uploads, TrustedPublishing, RateLimits);

struct Fixture {
    _dir: tempfile::TempDir,
    index: Arc<Double>,
    verifier: VerifierService,
    /// The public event stream the verifier publishes its audit events on.
    events: tokio::sync::broadcast::Receiver<wharf_bus::PublicEvent>,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner: Arc<dyn Index> = Arc::new(
            SqliteIndex::open(&dir.path().join("index.sqlite3"))
                .await
                .expect("index"),
        );
        let index = Arc::new(Double {
            inner,
            audit: Mutex::default(),
            winner: Mutex::default(),
            won: AtomicBool::new(false),
        });
        let keys = KeyStore::new(Arc::new(FixtureKeys), Duration::from_secs(60));
        let bus = Arc::new(wharf_bus::InProcessBus::new());
        let events = bus.subscribe_events();
        let verifier = VerifierService::with_key_store(
            Arc::clone(&index) as Arc<dyn Index>,
            VerifierSettings::default(),
            keys,
            Some(bus),
        );
        Fixture {
            _dir: dir,
            index,
            verifier,
            events,
        }
    }

    /// A pending publisher for `project`, registered by `user` (created if need be).
    async fn pending(&self, id: &str, project: &str, user: &str, policy: &GitHubPolicy) {
        let owner = match self.index.find_user_by_name(user).await.expect("user") {
            Some(owner) => owner,
            None => self.index.create_user(user, 0).await.expect("create user"),
        };
        let policy = PublisherPolicy::GitHub(policy.clone());
        self.index
            .insert_publisher(&NewPublisher {
                id: id.to_owned(),
                kind: "github".to_owned(),
                issuer_url: GITHUB_ISSUER_URL.to_owned(),
                policy: serde_json::to_string(&policy).expect("policy JSON"),
                label: publisher_label(&policy),
                token_ttl_seconds: None,
                pending_project_name: Some(project.to_owned()),
                pending_project_ultranormalized: Some(ultranormalize(project)),
                pending_user_id: Some(owner.id),
                project_ids: Vec::new(),
                created_at: 0,
            })
            .await
            .expect("insert publisher");
    }

    /// An active publisher of `project` (created through a pending one).
    async fn active(&self, id: &str, project: &str, policy: &GitHubPolicy) {
        self.pending(id, project, "owner", policy).await;
        let result = self
            .index
            .reify_pending_publisher(id, &target(project), 1)
            .await
            .expect("reify");
        assert!(matches!(result, ReifyResult::Created { .. }), "{result:?}");
    }

    async fn mint(&self, claims: &Value) -> Result<(), Refusal> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.to_owned());
        let jwt = encode(&header, claims, &signing_key()).expect("sign");
        self.verifier
            .exchange_oidc_token(&jwt)
            .await
            .expect("an answer, not a verifier error (503)")
            .map(|_| ())
    }

    fn audit(&self, kind: &str) -> Vec<Value> {
        self.index
            .audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, detail)| detail.clone())
            .collect()
    }
}

fn target(project: &str) -> ProjectTarget {
    ProjectTarget {
        name: project.to_owned(),
        normalized_name: normalize(project),
        ultranormalized_name: ultranormalize(project),
        create_with_owner: None,
    }
}

fn github(owner: &str, owner_id: Option<&str>, repository: &str) -> GitHubPolicy {
    GitHubPolicy {
        owner: owner.to_owned(),
        owner_id: owner_id.map(str::to_owned),
        repository: repository.to_owned(),
        workflow: "release.yml".to_owned(),
        environment: None,
        workflow_repository: None,
        workflow_path: None,
    }
}

/// GitHub's claims for a push of `owner/repository` running `workflow`, valid now.
fn claims(owner: &str, owner_id: &str, repository: &str, workflow: &str) -> Value {
    let now = jiff::Timestamp::now().as_second();
    let full = format!("{owner}/{repository}");
    let workflow_ref = format!("{full}/.github/workflows/{workflow}@refs/heads/main");
    json!({
        "iss": GITHUB_ISSUER_URL,
        "aud": "wharf",
        "iat": now - 5,
        "nbf": now - 5,
        "exp": now + 300,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": format!("repo:{full}:ref:refs/heads/main"),
        "repository": full,
        "repository_owner": owner,
        "repository_owner_id": owner_id,
        "job_workflow_ref": workflow_ref,
        "workflow_ref": workflow_ref,
        "ref": "refs/heads/main",
        "sha": "abc123",
        "event_name": "push",
    })
}

/// Issue #12, finding 4: a token of an unrelated repository is not told another project's
/// publisher configuration; the audit trail keeps it for operators. The publisher's own
/// repository is still told what differs.
#[tokio::test]
async fn explain_mode_keeps_other_projects_publishers_in_the_audit_trail() {
    let mut fixture = Fixture::new().await;
    let secret = GitHubPolicy {
        workflow: "deploy-secret.yml".to_owned(),
        environment: Some("prod-secret".to_owned()),
        ..github("hidden-org", Some("777"), "private-repo")
    };
    fixture
        .active("pub-secret", "secret-project", &secret)
        .await;

    let refusal = fixture
        .mint(&claims("octo", "42", "app", "release.yml"))
        .await
        .expect_err("no publisher");
    assert_eq!(refusal.code, ErrorCode::InvalidPublisher);
    assert_eq!(
        refusal.message,
        "valid token, but no corresponding publisher (Publisher with matching claims was not found)"
    );
    let refused = fixture.audit("oidc.mint_refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["code"], "invalid-publisher");
    assert_eq!(refused[0]["description"], refusal.message.as_str());
    let closest = refused[0]["closest_publisher"].as_str().unwrap_or_default();
    for expected in [
        "github:hidden-org/private-repo deploy-secret.yml",
        "claim 'repository' expected 'hidden-org/private-repo'",
        "claim 'repository_owner_id' expected '777'",
        "claim 'environment' expected 'prod-secret'",
    ] {
        assert!(closest.contains(expected), "{expected}: {closest}");
    }
    // The public event carries what the caller was told, not the operators' detail.
    let event = loop {
        let event = fixture.events.try_recv().expect("the refusal's event");
        if event.subject == "wharf.events.oidc.mint_refused" {
            break event;
        }
    };
    let payload: Value = serde_json::from_slice(&event.payload).expect("event JSON");
    assert_eq!(
        payload,
        json!({ "code": "invalid-publisher", "description": refusal.message })
    );

    // The publisher's own repository, outside its environment: explained.
    let refusal = fixture
        .mint(&claims(
            "hidden-org",
            "777",
            "private-repo",
            "deploy-secret.yml",
        ))
        .await
        .expect_err("no environment");
    assert_eq!(
        refusal.message,
        "valid token, but no corresponding publisher (Publisher with matching claims was not \
         found). Closest publisher: github:hidden-org/private-repo deploy-secret.yml: \
         claim 'environment' expected 'prod-secret'"
    );
}

/// Issue #12, finding 9: a concurrent exchange reifies the pending publisher between this
/// exchange's lookup and its own reify (constructed, not left to timing). The loser gets
/// PyPI's `invalid-pending-publisher`, audited, not a verifier error (503).
#[tokio::test]
async fn the_loser_of_a_pending_publisher_race_gets_invalid_pending_publisher() {
    // The concurrent winner reifies alice's `pub-a`. The loser's token matches `pub-a` itself,
    // or bob's pending publisher for the same name (of another repository), which the
    // winner's project creation removes.
    for (loser, repository) in [("pub-a", "app"), ("pub-b", "bobs-app")] {
        let fixture = Fixture::new().await;
        fixture
            .pending(
                "pub-a",
                "fresh-thing",
                "alice",
                &github("octo", None, "app"),
            )
            .await;
        fixture
            .pending(
                "pub-b",
                "fresh-thing",
                "bob",
                &github("octo", None, "bobs-app"),
            )
            .await;
        *fixture
            .index
            .winner
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some(("pub-a".to_owned(), "fresh-thing".to_owned()));

        let refusal = fixture
            .mint(&claims("octo", "42", repository, "release.yml"))
            .await
            .expect_err("the race is lost");
        assert!(fixture.index.won.load(Ordering::SeqCst), "the winner ran");
        assert_eq!(
            (refusal.code, refusal.message.as_str()),
            (
                ErrorCode::InvalidPendingPublisher,
                "valid token, but project already exists"
            ),
            "{loser}"
        );
        let refused = fixture.audit("oidc.mint_refused");
        assert_eq!(refused.len(), 1, "{loser}: {refused:?}");
        assert_eq!(refused[0]["code"], "invalid-pending-publisher");
        assert_eq!(
            refused[0]["description"],
            "valid token, but project already exists"
        );
        // The winner's project and publisher are untouched.
        let projects = fixture.index.list_projects().await.expect("projects");
        assert_eq!(projects.len(), 1);
        let publisher = fixture
            .index
            .find_publisher("pub-a")
            .await
            .expect("find")
            .expect("the winner's publisher");
        assert_eq!(publisher.project_ids, vec![projects[0].id.clone()]);
    }
}
