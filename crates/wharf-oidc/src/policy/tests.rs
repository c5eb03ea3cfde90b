//! Every claim rule of spec b.5 with its exact text, and every explain-mode message.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::issuer::builtin_issuers;

const PREFIX: &str = "valid token, but no corresponding publisher (";

fn claims(v: Value) -> Claims {
    match v {
        Value::Object(m) => Claims::new(m),
        _ => Claims::default(),
    }
}

fn builtin(kind: IssuerKind) -> Issuer {
    builtin_issuers()
        .into_iter()
        .find(|i| i.kind == kind)
        .unwrap_or_else(|| Issuer::operator("x", kind, "https://x"))
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.to_owned(), value);
    }
    v
}

fn without(mut v: Value, key: &str) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove(key);
    }
    v
}

/// Runs match_publisher over `(id, label, policy)` triples.
fn run(
    candidates: &[(&str, &str, PublisherPolicy)],
    issuer: &Issuer,
    token: &Value,
) -> Result<Matched, String> {
    run_full(candidates, issuer, token).map_err(|e| e.refusal.message)
}

/// Like [`run`], with the operators' explanation too.
fn run_full(
    candidates: &[(&str, &str, PublisherPolicy)],
    issuer: &Issuer,
    token: &Value,
) -> Result<Matched, NoMatch> {
    let list: Vec<Candidate<'_>> = candidates
        .iter()
        .map(|(id, label, policy)| Candidate { id, label, policy })
        .collect();
    match_publisher(&list, issuer, &claims(token.clone())).inspect_err(|e| {
        assert_eq!(e.refusal.code, crate::ErrorCode::InvalidPublisher);
    })
}

/// A token from outside the candidates' identities: the caller gets PyPI's bare text with
/// `reason`, the operators' explanation names `closest`.
#[track_caller]
fn assert_stranger(
    candidates: &[(&str, &str, PublisherPolicy)],
    issuer: &Issuer,
    token: &Value,
    reason: &str,
    closest: &str,
) {
    let no_match = run_full(candidates, issuer, token).err();
    assert_eq!(
        no_match,
        Some(NoMatch {
            refusal: crate::Refusal::new(crate::ErrorCode::InvalidPublisher, refused(reason, None)),
            closest: Some(closest.to_owned()),
        })
    );
}

/// The full description for an inner reason and an optional explanation.
fn refused(reason: &str, explanation: Option<&str>) -> String {
    match explanation {
        Some(e) => format!("{PREFIX}{reason}). Closest publisher: {e}"),
        None => format!("{PREFIX}{reason})"),
    }
}

// ---------------------------------------------------------------- GitHub

fn gh_token() -> Value {
    json!({
        "iss": "https://token.actions.githubusercontent.com",
        "aud": "wharf",
        "sub": "repo:octo/app:ref:refs/heads/main",
        "repository": "octo/app",
        "repository_owner": "octo",
        "repository_owner_id": "42",
        "repository_id": "1001",
        "job_workflow_ref": "octo/app/.github/workflows/release.yml@refs/heads/main",
        "workflow_ref": "octo/app/.github/workflows/release.yml@refs/heads/main",
        "ref": "refs/heads/main",
        "sha": "abc123",
        "jti": "jti-1",
        "event_name": "push",
        "actor": "someone",
    })
}

fn gh(owner_id: Option<&str>, environment: Option<&str>) -> GitHubPolicy {
    GitHubPolicy {
        owner: "octo".into(),
        owner_id: owner_id.map(Into::into),
        repository: "app".into(),
        workflow: "release.yml".into(),
        environment: environment.map(Into::into),
        workflow_repository: None,
        workflow_path: None,
    }
}

fn gh_one(policy: GitHubPolicy) -> Vec<(&'static str, &'static str, PublisherPolicy)> {
    vec![(
        "p1",
        "github:octo/app release.yml",
        PublisherPolicy::GitHub(policy),
    )]
}

const GH_LABEL: &str = "github:octo/app release.yml";

#[test]
fn github_matches_with_pypi_additional_claims() {
    let m = run(
        &gh_one(gh(Some("42"), None)),
        &builtin(IssuerKind::GitHub),
        &gh_token(),
    );
    assert_eq!(
        m,
        Ok(Matched {
            id: "p1".into(),
            pin_owner_id: None,
            stored_claims: json!({"ref": "refs/heads/main", "sha": "abc123"}),
            publisher_url: Some("https://github.com/octo/app/commit/abc123".into()),
        })
    );
}

#[test]
fn github_owner_id_pinned_from_first_exchange() {
    let m = run(
        &gh_one(gh(None, None)),
        &builtin(IssuerKind::GitHub),
        &gh_token(),
    );
    assert_eq!(m.map(|m| m.pin_owner_id), Ok(Some("42".into())));
}

#[test]
fn github_owner_id_exact_when_pinned() {
    let token = with(gh_token(), "repository_owner_id", json!("43"));
    // Another owner account under the same login (re-registered): a stranger.
    assert_stranger(
        &gh_one(gh(Some("42"), None)),
        &builtin(IssuerKind::GitHub),
        &token,
        NOT_FOUND,
        &format!("{GH_LABEL}: claim 'repository_owner_id' expected '42'"),
    );
    // An unpinned publisher accepts any owner id, and reports it.
    let m = run(
        &gh_one(gh(None, None)),
        &builtin(IssuerKind::GitHub),
        &token,
    );
    assert_eq!(m.map(|m| m.pin_owner_id), Ok(Some("43".into())));
}

#[test]
fn github_unpinned_owner_id_must_be_a_string() {
    let token = with(gh_token(), "repository_owner_id", json!(42));
    assert_eq!(
        run(
            &gh_one(gh(None, None)),
            &builtin(IssuerKind::GitHub),
            &token
        ),
        Err(refused(
            "Check failed for required claim 'repository_owner_id'",
            Some(&format!("{GH_LABEL}: all declared claims match"))
        ))
    );
}

#[test]
fn github_repository_is_case_insensitive() {
    let token = with(gh_token(), "repository", json!("octo/APP"));
    let token = with(
        token,
        "job_workflow_ref",
        json!("octo/APP/.github/workflows/release.yml@refs/heads/main"),
    );
    assert!(
        run(
            &gh_one(gh(Some("42"), None)),
            &builtin(IssuerKind::GitHub),
            &token
        )
        .is_ok()
    );
}

#[test]
fn github_repository_check_text() {
    let policy = gh(Some("42"), None);
    let empty = claims(with(gh_token(), "repository", json!("")));
    assert_eq!(
        policy.verify(&empty),
        Err("Check failed for required claim 'repository'".into())
    );
    let other = claims(with(gh_token(), "repository", json!("octo/other")));
    assert_eq!(
        policy.verify(&other),
        Err("Check failed for required claim 'repository'".into())
    );
}

#[test]
fn github_repository_owner_is_exact() {
    // Lookup goes by the owner inside `repository`; the `repository_owner` claim is then
    // checked on its own.
    let token = with(gh_token(), "repository_owner", json!("Octo"));
    assert_eq!(
        run(
            &gh_one(gh(Some("42"), None)),
            &builtin(IssuerKind::GitHub),
            &token
        ),
        Err(refused(
            "Check failed for required claim 'repository_owner'",
            Some(&format!(
                "{GH_LABEL}: claim 'repository_owner' expected 'octo'"
            ))
        ))
    );
    // A policy spelled with another case than GitHub's login finds nothing.
    let mut policy = gh(Some("42"), None);
    policy.owner = "Octo".into();
    assert_eq!(
        run(&gh_one(policy), &builtin(IssuerKind::GitHub), &gh_token()),
        Err(refused(
            NOT_FOUND,
            Some(&format!(
                "{GH_LABEL}: claim 'repository_owner' expected 'Octo'"
            ))
        ))
    );
}

#[test]
fn github_missing_claims() {
    for name in github::REQUIRED_CLAIMS {
        // Without its owner id, the token is not the pinned owner's: no explanation.
        let explained = (*name != "repository_owner_id").then(|| {
            format!(
                "{GH_LABEL}: {}",
                match *name {
                    "repository" => "claim 'repository' expected 'octo/app'",
                    "repository_owner" => "claim 'repository_owner' expected 'octo'",
                    "repository_owner_id" => "claim 'repository_owner_id' expected '42'",
                    "job_workflow_ref" | "ref" => {
                        "claim 'job_workflow_ref' expected 'octo/app/.github/workflows/release.yml@<ref or sha>'"
                    }
                    _ => "all declared claims match",
                }
            )
        });
        let expected = Err(refused(
            &format!("Missing claim '{name}'"),
            explained.as_deref(),
        ));
        let token = without(gh_token(), name);
        assert_eq!(
            run(
                &gh_one(gh(Some("42"), None)),
                &builtin(IssuerKind::GitHub),
                &token
            ),
            expected,
            "{name}"
        );
        // JSON null counts as missing, as `claims.get(x) is None` does in PyPI.
        let token = with(gh_token(), name, Value::Null);
        assert_eq!(
            run(
                &gh_one(gh(Some("42"), None)),
                &builtin(IssuerKind::GitHub),
                &token
            ),
            expected,
            "{name}"
        );
    }
}

#[test]
fn github_missing_claim_without_candidates_has_no_explanation() {
    let token = without(gh_token(), "jti");
    assert_eq!(
        run(&[], &builtin(IssuerKind::GitHub), &token),
        Err(refused("Missing claim 'jti'", None))
    );
}

#[test]
fn github_job_workflow_ref_by_ref_or_sha() {
    let policy = gh_one(gh(Some("42"), None));
    let issuer = builtin(IssuerKind::GitHub);
    let by_sha = with(
        gh_token(),
        "job_workflow_ref",
        json!("octo/app/.github/workflows/release.yml@abc123"),
    );
    assert!(run(&policy, &issuer, &by_sha).is_ok());
    // A deployment event: empty ref, sha used.
    let no_ref = with(by_sha, "ref", json!(""));
    assert!(run(&policy, &issuer, &no_ref).is_ok());
}

#[test]
fn github_job_workflow_ref_mismatch_text() {
    let token = with(
        gh_token(),
        "job_workflow_ref",
        json!("octo/app/.github/workflows/release.yml@refs/heads/evil"),
    );
    assert_eq!(
        run(
            &gh_one(gh(Some("42"), None)),
            &builtin(IssuerKind::GitHub),
            &token
        ),
        Err(refused(
            "The job_workflow_ref claim does not match, expecting one of \
             ['octo/app/.github/workflows/release.yml@abc123', \
             'octo/app/.github/workflows/release.yml@refs/heads/main'], \
             got 'octo/app/.github/workflows/release.yml@refs/heads/evil'",
            Some(&format!(
                "{GH_LABEL}: claim 'job_workflow_ref' expected 'octo/app/.github/workflows/release.yml@<ref or sha>'"
            ))
        ))
    );
    // Only the non-empty one of ref/sha is offered.
    let token = with(token, "ref", json!(""));
    let err = run(
        &gh_one(gh(Some("42"), None)),
        &builtin(IssuerKind::GitHub),
        &token,
    )
    .err()
    .unwrap_or_default();
    assert!(
        err.starts_with(&format!(
            "{PREFIX}The job_workflow_ref claim does not match, expecting one of \
             ['octo/app/.github/workflows/release.yml@abc123'], got"
        )),
        "{err}"
    );
}

#[test]
fn github_ref_and_sha_empty_text() {
    let token = with(with(gh_token(), "ref", json!("")), "sha", json!(""));
    assert_eq!(
        run(
            &gh_one(gh(Some("42"), None)),
            &builtin(IssuerKind::GitHub),
            &token
        ),
        Err(refused(
            "The ref and sha claims are empty",
            Some(&format!(
                "{GH_LABEL}: claim 'job_workflow_ref' expected 'octo/app/.github/workflows/release.yml@<ref or sha>'"
            ))
        ))
    );
}

#[test]
fn github_job_workflow_ref_empty_texts() {
    // Through matching, PyPI's lookup fails first on an unusable job_workflow_ref…
    let token = with(gh_token(), "job_workflow_ref", json!(""));
    assert_eq!(
        run(
            &gh_one(gh(Some("42"), None)),
            &builtin(IssuerKind::GitHub),
            &token
        ),
        Err(refused(
            "Could not job extract workflow filename from OIDC claims",
            Some(&format!(
                "{GH_LABEL}: claim 'job_workflow_ref' expected 'octo/app/.github/workflows/release.yml@<ref or sha>'"
            ))
        ))
    );
    // …and the check itself has its own text.
    assert_eq!(
        gh(Some("42"), None).verify(&claims(token)),
        Err("The job_workflow_ref claim is empty".into())
    );
}

#[test]
fn github_pull_request_target_refused() {
    let token = with(gh_token(), "event_name", json!("pull_request_target"));
    assert_eq!(
        run(
            &gh_one(gh(Some("42"), None)),
            &builtin(IssuerKind::GitHub),
            &token
        ),
        Err(refused(
            "Publishing from a workflow invoked via 'pull_request_target' is not supported.",
            Some(&format!("{GH_LABEL}: all declared claims match"))
        ))
    );
    let token = with(gh_token(), "event_name", json!("pull_request"));
    assert!(
        run(
            &gh_one(gh(Some("42"), None)),
            &builtin(IssuerKind::GitHub),
            &token
        )
        .is_ok()
    );
}

#[test]
fn github_environment_rules() {
    let issuer = builtin(IssuerKind::GitHub);
    // Case-insensitive.
    let token = with(gh_token(), "environment", json!("RELEASE"));
    assert!(run(&gh_one(gh(Some("42"), Some("release"))), &issuer, &token).is_ok());
    // No environment on the publisher: anything passes.
    assert!(run(&gh_one(gh(Some("42"), None)), &issuer, &token).is_ok());
    // Required when configured.
    assert_eq!(
        run(
            &gh_one(gh(Some("42"), Some("release"))),
            &issuer,
            &gh_token()
        ),
        Err(refused(
            NOT_FOUND,
            Some(&format!(
                "{GH_LABEL}: claim 'environment' expected 'release'"
            ))
        ))
    );
    let token = with(gh_token(), "environment", json!("staging"));
    assert_eq!(
        run(&gh_one(gh(Some("42"), Some("release"))), &issuer, &token),
        Err(refused(
            NOT_FOUND,
            Some(&format!(
                "{GH_LABEL}: claim 'environment' expected 'release'"
            ))
        ))
    );
    // The check's own text (PyPI's optional-claim failure).
    assert_eq!(
        gh(Some("42"), Some("release")).verify(&claims(token)),
        Err("Check failed for optional claim 'environment'".into())
    );
}

#[test]
fn github_environment_preference() {
    let general = gh(Some("42"), None);
    let specific = gh(Some("42"), Some("prod"));
    let both = vec![
        (
            "general",
            "github:octo/app release.yml",
            PublisherPolicy::GitHub(general),
        ),
        (
            "specific",
            "github:octo/app release.yml (prod)",
            PublisherPolicy::GitHub(specific.clone()),
        ),
    ];
    let issuer = builtin(IssuerKind::GitHub);
    let id = |token: &Value| run(&both, &issuer, token).map(|m| m.id);
    assert_eq!(
        id(&with(gh_token(), "environment", json!("Prod"))),
        Ok("specific".into())
    );
    assert_eq!(
        id(&with(gh_token(), "environment", json!("staging"))),
        Ok("general".into())
    );
    assert_eq!(id(&gh_token()), Ok("general".into()));
    let only_specific = vec![("specific", "s", PublisherPolicy::GitHub(specific))];
    assert!(run(&only_specific, &issuer, &gh_token()).is_err());
}

#[test]
fn github_both_sub_formats_accepted() {
    let issuer = builtin(IssuerKind::GitHub);
    for sub in [
        json!("repo:octo/app:ref:refs/heads/main"),
        json!("repo:octo/app:environment:release"),
        json!("repository_owner_id:42:repository_id:1001:ref:refs/heads/main"),
        json!("repo:someone/else"),
    ] {
        let token = with(gh_token(), "sub", sub.clone());
        assert!(
            run(&gh_one(gh(Some("42"), None)), &issuer, &token).is_ok(),
            "{sub}"
        );
    }
    assert!(
        run(
            &gh_one(gh(Some("42"), None)),
            &issuer,
            &without(gh_token(), "sub")
        )
        .is_ok()
    );
}

fn reusable() -> GitHubPolicy {
    GitHubPolicy {
        workflow_repository: Some("org/shared".into()),
        workflow_path: Some(".github/workflows/pypi.yml".into()),
        ..gh(Some("42"), None)
    }
}

fn reusable_token() -> Value {
    with(
        gh_token(),
        "job_workflow_ref",
        json!("org/shared/.github/workflows/pypi.yml@refs/tags/v1"),
    )
}

#[test]
fn github_reusable_workflow_across_repositories() {
    let issuer = builtin(IssuerKind::GitHub);
    assert!(run(&gh_one(reusable()), &issuer, &reusable_token()).is_ok());
    // Any ref of the called workflow, including a sha.
    let by_sha = with(
        reusable_token(),
        "job_workflow_ref",
        json!("org/shared/.github/workflows/pypi.yml@0123abcd"),
    );
    assert!(run(&gh_one(reusable()), &issuer, &by_sha).is_ok());

    // The called workflow must be the declared one.
    let other = with(
        reusable_token(),
        "job_workflow_ref",
        json!("evil/shared/.github/workflows/pypi.yml@v1"),
    );
    assert_eq!(
        run(&gh_one(reusable()), &issuer, &other),
        Err(refused(
            "The job_workflow_ref claim does not match, expecting \
             'org/shared/.github/workflows/pypi.yml@<ref>', got 'evil/shared/.github/workflows/pypi.yml@v1'",
            Some(&format!(
                "{GH_LABEL}: claim 'job_workflow_ref' expected 'org/shared/.github/workflows/pypi.yml@<ref>'"
            ))
        ))
    );

    // The caller is checked through workflow_ref, with PyPI's ref/sha rule.
    let wrong_ref = with(
        reusable_token(),
        "workflow_ref",
        json!("octo/app/.github/workflows/release.yml@refs/heads/x"),
    );
    assert_eq!(
        run(&gh_one(reusable()), &issuer, &wrong_ref),
        Err(refused(
            "The workflow_ref claim does not match, expecting one of \
             ['octo/app/.github/workflows/release.yml@abc123', \
             'octo/app/.github/workflows/release.yml@refs/heads/main'], \
             got 'octo/app/.github/workflows/release.yml@refs/heads/x'",
            Some(&format!(
                "{GH_LABEL}: claim 'workflow_ref' expected 'octo/app/.github/workflows/release.yml@<ref or sha>'"
            ))
        ))
    );
    let wrong_caller = with(
        reusable_token(),
        "workflow_ref",
        json!("octo/app/.github/workflows/other.yml@refs/heads/main"),
    );
    assert_eq!(
        run(&gh_one(reusable()), &issuer, &wrong_caller),
        Err(refused(
            NOT_FOUND,
            Some(&format!(
                "{GH_LABEL}: claim 'workflow_ref' expected 'octo/app/.github/workflows/release.yml@<ref or sha>'"
            ))
        ))
    );
    let policy = reusable();
    assert_eq!(
        policy.verify(&claims(without(reusable_token(), "workflow_ref"))),
        Err("Missing claim 'workflow_ref'".into())
    );
    assert_eq!(
        policy.verify(&claims(with(reusable_token(), "workflow_ref", json!("")))),
        Err("The workflow_ref claim is empty".into())
    );
}

#[test]
fn github_plain_publisher_refuses_a_foreign_reusable_workflow() {
    // Same file name in another repository: PyPI's job_workflow_ref rule refuses it.
    let token = with(
        gh_token(),
        "job_workflow_ref",
        json!("evil/repo/.github/workflows/release.yml@refs/heads/main"),
    );
    let err = run(
        &gh_one(gh(Some("42"), None)),
        &builtin(IssuerKind::GitHub),
        &token,
    )
    .err()
    .unwrap_or_default();
    assert!(
        err.starts_with(&format!(
            "{PREFIX}The job_workflow_ref claim does not match"
        )),
        "{err}"
    );
}

#[test]
fn github_enterprise_server_publisher_url() {
    let ghes = Issuer::operator(
        "ghes",
        IssuerKind::GitHub,
        "https://ghe.example.com/_services/token",
    );
    let token = with(
        gh_token(),
        "iss",
        json!("https://ghe.example.com/_services/token"),
    );
    let m = run(&gh_one(gh(Some("42"), None)), &ghes, &token);
    assert_eq!(
        m.map(|m| m.publisher_url),
        Ok(Some(
            "https://ghe.example.com/octo/app/commit/abc123".into()
        ))
    );
    let enterprise = Issuer::operator(
        "ent",
        IssuerKind::GitHub,
        "https://token.actions.githubusercontent.com/acme",
    );
    let m = run(&gh_one(gh(Some("42"), None)), &enterprise, &gh_token());
    assert_eq!(
        m.map(|m| m.publisher_url),
        Ok(Some("https://github.com/octo/app/commit/abc123".into()))
    );
}

// ---------------------------------------------------------------- GitLab

fn gl_token() -> Value {
    json!({
        "iss": "https://gitlab.com",
        "aud": "wharf",
        "sub": "project_path:ns/proj:ref_type:branch:ref:main",
        "project_path": "ns/proj",
        "project_id": "77",
        "namespace_id": "8",
        "ci_config_ref_uri": "gitlab.com/ns/proj//.gitlab-ci.yml@refs/heads/main",
        "ref_path": "refs/heads/main",
        "sha": "deadbeef",
        "jti": "jti-2",
    })
}

fn gl(environment: Option<&str>) -> GitLabPolicy {
    GitLabPolicy {
        namespace: "ns".into(),
        project: "proj".into(),
        workflow_filepath: ".gitlab-ci.yml".into(),
        environment: environment.map(Into::into),
    }
}

const GL_LABEL: &str = "gitlab:ns/proj .gitlab-ci.yml";

fn gl_one(policy: GitLabPolicy) -> Vec<(&'static str, &'static str, PublisherPolicy)> {
    vec![("g1", GL_LABEL, PublisherPolicy::GitLab(policy))]
}

#[test]
fn gitlab_matches() {
    let m = run(&gl_one(gl(None)), &builtin(IssuerKind::GitLab), &gl_token());
    assert_eq!(
        m,
        Ok(Matched {
            id: "g1".into(),
            pin_owner_id: None,
            stored_claims: json!({"ref_path": "refs/heads/main", "sha": "deadbeef"}),
            publisher_url: Some("https://gitlab.com/ns/proj/commit/deadbeef".into()),
        })
    );
    let by_sha = with(
        gl_token(),
        "ci_config_ref_uri",
        json!("gitlab.com/ns/proj//.gitlab-ci.yml@deadbeef"),
    );
    assert!(run(&gl_one(gl(None)), &builtin(IssuerKind::GitLab), &by_sha).is_ok());
}

#[test]
fn gitlab_paths_are_case_insensitive() {
    let token = with(gl_token(), "project_path", json!("NS/Proj"));
    let token = with(
        token,
        "sub",
        json!("project_path:NS/Proj:ref_type:branch:ref:main"),
    );
    let token = with(
        token,
        "ci_config_ref_uri",
        json!("gitlab.com/NS/Proj//.gitlab-ci.yml@refs/heads/main"),
    );
    assert!(run(&gl_one(gl(None)), &builtin(IssuerKind::GitLab), &token).is_ok());
}

#[test]
fn gitlab_sub_rule() {
    let issuer = builtin(IssuerKind::GitLab);
    for sub in [
        "project_path:other/x",
        "project_path",
        "",
        "ns/proj",
        ":ns/proj",
    ] {
        let token = with(gl_token(), "sub", json!(sub));
        assert_eq!(
            run(&gl_one(gl(None)), &issuer, &token),
            Err(refused(
                "Check failed for required claim 'sub'",
                Some(&format!(
                    "{GL_LABEL}: claim 'sub' expected 'project_path:ns/proj'"
                ))
            )),
            "{sub}"
        );
    }
    // Only the first two parts count.
    let token = with(
        gl_token(),
        "sub",
        json!("PROJECT_PATH:NS/PROJ:anything:else"),
    );
    assert!(run(&gl_one(gl(None)), &issuer, &token).is_ok());
}

#[test]
fn gitlab_project_path_check_text() {
    let token = claims(with(gl_token(), "project_path", json!("ns/other")));
    assert_eq!(
        gl(None).verify(&builtin(IssuerKind::GitLab), &token),
        Err("Check failed for required claim 'project_path'".into())
    );
    // Through matching, a different project is simply not found.
    let token = with(gl_token(), "project_path", json!("ns/other"));
    assert_eq!(
        run(&gl_one(gl(None)), &builtin(IssuerKind::GitLab), &token),
        Err(refused(
            NOT_FOUND,
            Some(&format!(
                "{GL_LABEL}: claim 'project_path' expected 'ns/proj'"
            ))
        ))
    );
}

#[test]
fn gitlab_ci_config_ref_uri_texts() {
    let issuer = builtin(IssuerKind::GitLab);
    let explained = format!(
        "{GL_LABEL}: claim 'ci_config_ref_uri' expected 'gitlab.com/ns/proj//.gitlab-ci.yml@<ref_path or sha>'"
    );
    let token = with(
        gl_token(),
        "ci_config_ref_uri",
        json!("gitlab.com/ns/proj//.gitlab-ci.yml@refs/heads/evil"),
    );
    assert_eq!(
        run(&gl_one(gl(None)), &issuer, &token),
        Err(refused(
            "The ci_config_ref_uri claim does not match, expecting one of \
             ['gitlab.com/ns/proj//.gitlab-ci.yml@deadbeef', \
             'gitlab.com/ns/proj//.gitlab-ci.yml@refs/heads/main'], \
             got 'gitlab.com/ns/proj//.gitlab-ci.yml@refs/heads/evil'",
            Some(&explained)
        ))
    );
    // Both ref_path and sha must be non-empty.
    for empty in ["ref_path", "sha"] {
        let token = with(gl_token(), empty, json!(""));
        assert_eq!(
            run(&gl_one(gl(None)), &issuer, &token),
            Err(refused(
                "The ref_path and sha claims are empty",
                Some(&explained)
            )),
            "{empty}"
        );
    }
    let token = with(gl_token(), "ci_config_ref_uri", json!(""));
    assert_eq!(
        gl(None).verify(&issuer, &claims(token.clone())),
        Err("The ci_config_ref_uri claim is empty".into())
    );
    assert_eq!(
        run(&gl_one(gl(None)), &issuer, &token),
        Err(refused(NOT_FOUND, Some(&explained)))
    );
    // Another file of the same project.
    let token = with(
        gl_token(),
        "ci_config_ref_uri",
        json!("gitlab.com/ns/proj//ci/other.yml@refs/heads/main"),
    );
    assert_eq!(
        run(&gl_one(gl(None)), &issuer, &token),
        Err(refused(NOT_FOUND, Some(&explained)))
    );
}

#[test]
fn gitlab_self_managed_issuer_host() {
    let issuer = Issuer::operator("corp", IssuerKind::GitLab, "https://gitlab.example.com");
    let token = with(gl_token(), "iss", json!("https://gitlab.example.com"));
    let token = with(
        token,
        "ci_config_ref_uri",
        json!("gitlab.example.com/ns/proj//.gitlab-ci.yml@refs/heads/main"),
    );
    let m = run(&gl_one(gl(None)), &issuer, &token);
    assert_eq!(
        m.map(|m| m.publisher_url),
        Ok(Some(
            "https://gitlab.example.com/ns/proj/commit/deadbeef".into()
        ))
    );
    // gitlab.com's spelling does not pass on another instance.
    let token = with(gl_token(), "iss", json!("https://gitlab.example.com"));
    let err = run(&gl_one(gl(None)), &issuer, &token)
        .err()
        .unwrap_or_default();
    assert!(
        err.contains("expecting one of ['gitlab.example.com/ns/proj//.gitlab-ci.yml@deadbeef'"),
        "{err}"
    );
}

#[test]
fn gitlab_environment_is_case_sensitive() {
    let issuer = builtin(IssuerKind::GitLab);
    let token = with(gl_token(), "environment", json!("Prod"));
    assert!(run(&gl_one(gl(Some("Prod"))), &issuer, &token).is_ok());
    let token = with(gl_token(), "environment", json!("prod"));
    assert_eq!(
        run(&gl_one(gl(Some("Prod"))), &issuer, &token),
        Err(refused(
            NOT_FOUND,
            Some(&format!("{GL_LABEL}: claim 'environment' expected 'Prod'"))
        ))
    );
    assert_eq!(
        gl(Some("Prod")).verify(&issuer, &claims(token)),
        Err("Check failed for optional claim 'environment'".into())
    );
    // Preference, exact case.
    let both = vec![
        ("general", "general", PublisherPolicy::GitLab(gl(None))),
        (
            "specific",
            "specific",
            PublisherPolicy::GitLab(gl(Some("Prod"))),
        ),
    ];
    let id = |t: &Value| run(&both, &issuer, t).map(|m| m.id);
    assert_eq!(
        id(&with(gl_token(), "environment", json!("Prod"))),
        Ok("specific".into())
    );
    assert_eq!(
        id(&with(gl_token(), "environment", json!("prod"))),
        Ok("general".into())
    );
}

#[test]
fn gitlab_missing_claims() {
    for name in gitlab::REQUIRED_CLAIMS {
        let token = without(gl_token(), name);
        let err = run(&gl_one(gl(None)), &builtin(IssuerKind::GitLab), &token)
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with(&format!("{PREFIX}Missing claim '{name}')")),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------- Google

fn google_token() -> Value {
    json!({
        "iss": "https://accounts.google.com",
        "aud": "wharf",
        "email": "ci@proj.iam.gserviceaccount.com",
        "email_verified": true,
        "sub": "1234567890",
        "azp": "x",
    })
}

fn google(sub: Option<&str>) -> PublisherPolicy {
    PublisherPolicy::Google(GooglePolicy {
        email: "ci@proj.iam.gserviceaccount.com".into(),
        sub: sub.map(Into::into),
    })
}

const GOOGLE_LABEL: &str = "google:ci@proj.iam.gserviceaccount.com";

#[test]
fn google_rules() {
    let issuer = builtin(IssuerKind::Google);
    let one = |sub| vec![("o1", GOOGLE_LABEL, google(sub))];
    let m = run(&one(None), &issuer, &google_token());
    assert_eq!(
        m,
        Ok(Matched {
            id: "o1".into(),
            pin_owner_id: None,
            stored_claims: json!({}),
            publisher_url: None
        })
    );
    assert!(run(&one(Some("1234567890")), &issuer, &google_token()).is_ok());

    // email_verified must be the JSON boolean true.
    for bad in [json!(false), json!("true"), json!(1)] {
        let token = with(google_token(), "email_verified", bad.clone());
        assert_eq!(
            run(&one(None), &issuer, &token),
            Err(refused(
                "Check failed for required claim 'email_verified'",
                Some(&format!(
                    "{GOOGLE_LABEL}: claim 'email_verified' expected 'true'"
                ))
            )),
            "{bad}"
        );
    }
    // email exact.
    let token = with(
        google_token(),
        "email",
        json!("CI@proj.iam.gserviceaccount.com"),
    );
    assert_stranger(
        &one(None),
        &issuer,
        &token,
        NOT_FOUND,
        &format!("{GOOGLE_LABEL}: claim 'email' expected 'ci@proj.iam.gserviceaccount.com'"),
    );
    let policy = GooglePolicy {
        email: "ci@proj.iam.gserviceaccount.com".into(),
        sub: None,
    };
    assert_eq!(
        policy.verify(&claims(token)),
        Err("Check failed for required claim 'email'".into())
    );
    // sub exact when configured.
    let token = with(google_token(), "sub", json!("999"));
    assert_eq!(
        run(&one(Some("1234567890")), &issuer, &token),
        Err(refused(
            NOT_FOUND,
            Some(&format!(
                "{GOOGLE_LABEL}: claim 'sub' expected '1234567890'"
            ))
        ))
    );
    let policy = GooglePolicy {
        email: "ci@proj.iam.gserviceaccount.com".into(),
        sub: Some("1234567890".into()),
    };
    assert_eq!(
        policy.verify(&claims(token)),
        Err("Check failed for optional claim 'sub'".into())
    );
    for name in ["email", "email_verified"] {
        assert_eq!(
            run(&[], &issuer, &without(google_token(), name)),
            Err(refused(&format!("Missing claim '{name}'"), None))
        );
    }
}

#[test]
fn google_sub_preference() {
    let issuer = builtin(IssuerKind::Google);
    let both = vec![
        ("general", "general", google(None)),
        ("specific", "specific", google(Some("1234567890"))),
    ];
    assert_eq!(
        run(&both, &issuer, &google_token()).map(|m| m.id),
        Ok("specific".into())
    );
    let other = with(google_token(), "sub", json!("5"));
    assert_eq!(
        run(&both, &issuer, &other).map(|m| m.id),
        Ok("general".into())
    );
}

// ---------------------------------------------------------------- ActiveState

fn as_token() -> Value {
    json!({
        "iss": "https://platform.activestate.com/api/v1/oauth/oidc",
        "aud": "wharf",
        "sub": "org:acme:project:widget",
        "organization": "acme",
        "project": "widget",
        "actor_id": "u-1",
        "actor": "alice",
        "builder": "pypi-publisher",
        "artifact_id": "a",
    })
}

fn activestate() -> ActiveStatePolicy {
    ActiveStatePolicy {
        organization: "acme".into(),
        project: "widget".into(),
        actor_id: "u-1".into(),
        actor: Some("alice".into()),
    }
}

const AS_LABEL: &str = "activestate:acme/widget";

fn as_one() -> Vec<(&'static str, &'static str, PublisherPolicy)> {
    vec![("a1", AS_LABEL, PublisherPolicy::ActiveState(activestate()))]
}

#[test]
fn activestate_rules() {
    let issuer = builtin(IssuerKind::ActiveState);
    let m = run(&as_one(), &issuer, &as_token());
    assert_eq!(
        m,
        Ok(Matched {
            id: "a1".into(),
            pin_owner_id: None,
            stored_claims: json!({}),
            publisher_url: Some("https://platform.activestate.com/acme/widget".into()),
        })
    );
    let extra = with(as_token(), "sub", json!("org:acme:project:widget:more"));
    assert!(run(&as_one(), &issuer, &extra).is_ok());

    let sub_diff = format!("{AS_LABEL}: claim 'sub' expected 'org:acme:project:widget'");
    for (sub, text) in [
        ("", "Missing 'subject' claim"),
        ("org:acme:project", "Invalid 'subject' claim. Wrong format"),
        ("org:acme:project:other", "Invalid 'subject' claim"),
        ("ORG:acme:project:widget", "Invalid 'subject' claim"),
    ] {
        let token = with(as_token(), "sub", json!(sub));
        assert_eq!(
            run(&as_one(), &issuer, &token),
            Err(refused(text, Some(&sub_diff))),
            "{sub}"
        );
    }
    let token = with(as_token(), "builder", json!("other"));
    assert_eq!(
        run(&as_one(), &issuer, &token),
        Err(refused(
            "Check failed for required claim 'builder'",
            Some(&format!(
                "{AS_LABEL}: claim 'builder' expected 'pypi-publisher'"
            ))
        ))
    );
    for (name, expected) in [
        ("organization", "acme"),
        ("project", "widget"),
        ("actor_id", "u-1"),
    ] {
        let token = with(as_token(), name, json!("other"));
        assert_eq!(
            activestate().verify(&claims(token.clone())),
            Err(format!("Check failed for required claim '{name}'"))
        );
        let explanation = format!("{AS_LABEL}: claim '{name}' expected '{expected}'");
        if name == "organization" {
            assert_stranger(&as_one(), &issuer, &token, NOT_FOUND, &explanation);
        } else {
            // The same organization: explained.
            assert_eq!(
                run(&as_one(), &issuer, &token),
                Err(refused(NOT_FOUND, Some(&explanation))),
            );
        }
    }
    for name in activestate::REQUIRED_CLAIMS {
        let err = run(&as_one(), &issuer, &without(as_token(), name))
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with(&format!("{PREFIX}Missing claim '{name}')")),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------- Generic

fn generic(pairs: &[(&str, &str)]) -> PublisherPolicy {
    let claims: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    match GenericPolicy::new(claims) {
        Ok(p) => PublisherPolicy::Generic(p),
        Err(e) => panic!("test policy invalid: {e}"),
    }
}

fn forgejo() -> Issuer {
    Issuer::operator(
        "forgejo",
        IssuerKind::Generic,
        "https://code.example.com/api/actions",
    )
}

fn forgejo_token() -> Value {
    json!({
        "iss": "https://code.example.com/api/actions",
        "aud": "wharf",
        "sub": "repo:org/app:ref:refs/tags/v1.2.0",
        "repository": "org/app",
        "run_number": 12,
        "ref_protected": true,
    })
}

const GEN_LABEL: &str = "generic:forgejo org/app";

#[test]
fn generic_exact_and_glob() {
    let issuer = forgejo();
    let one = |p| vec![("x1", GEN_LABEL, p)];
    let policy = generic(&[
        ("sub", "repo:org/app:ref:refs/tags/v*"),
        ("repository", "org/app"),
    ]);
    assert_eq!(
        run(&one(policy.clone()), &issuer, &forgejo_token()),
        Ok(Matched {
            id: "x1".into(),
            pin_owner_id: None,
            stored_claims: json!({}),
            publisher_url: None
        })
    );
    // Numbers and booleans compare as JSON writes them.
    let typed = generic(&[
        ("sub", "repo:org/app:*"),
        ("run_number", "1?"),
        ("ref_protected", "true"),
    ]);
    assert!(run(&one(typed), &issuer, &forgejo_token()).is_ok());

    let branch = with(
        forgejo_token(),
        "sub",
        json!("repo:org/app:ref:refs/heads/main"),
    );
    // The publisher is looked up by its `sub`: a token outside it is a stranger.
    assert_stranger(
        &one(policy.clone()),
        &issuer,
        &branch,
        NOT_FOUND,
        &format!("{GEN_LABEL}: claim 'sub' expected 'repo:org/app:ref:refs/tags/v*'"),
    );
    let fork = with(forgejo_token(), "repository", json!("fork/app"));
    assert_eq!(
        run(&one(policy.clone()), &issuer, &fork),
        Err(refused(
            "Check failed for required claim 'repository'",
            Some(&format!(
                "{GEN_LABEL}: claim 'repository' expected 'org/app'"
            ))
        ))
    );
    let missing = without(forgejo_token(), "repository");
    assert_eq!(
        run(&one(policy.clone()), &issuer, &missing),
        Err(refused(
            "Missing claim 'repository'",
            Some(&format!(
                "{GEN_LABEL}: claim 'repository' expected 'org/app'"
            ))
        ))
    );
    let list = with(forgejo_token(), "repository", json!(["org/app"]));
    assert!(run(&one(policy), &issuer, &list).is_err());
}

#[test]
fn generic_prefers_the_most_specific_policy() {
    let broad = generic(&[("sub", "repo:org/app:*")]);
    let narrow = generic(&[("sub", "repo:org/app:*"), ("repository", "org/app")]);
    let both = vec![("broad", "broad", broad), ("narrow", "narrow", narrow)];
    assert_eq!(
        run(&both, &forgejo(), &forgejo_token()).map(|m| m.id),
        Ok("narrow".into())
    );
}

#[test]
fn generic_policy_serde_round_trip() {
    let policy = generic(&[("sub", "repo:org/app:*"), ("repository", "org/app")]);
    let json = serde_json::to_value(&policy).unwrap_or_default();
    assert_eq!(
        json,
        json!({"kind": "generic", "claims": {"repository": "org/app", "sub": "repo:org/app:*"}})
    );
    let back: Result<PublisherPolicy, _> = serde_json::from_value(json);
    assert_eq!(back.ok(), Some(policy));
    let no_sub: Result<PublisherPolicy, _> =
        serde_json::from_value(json!({"kind": "generic", "claims": {"repository": "org/app"}}));
    assert!(no_sub.is_err());
}

// ---------------------------------------------------------------- matching and explain mode

#[test]
fn no_candidates_is_pypis_plain_text() {
    for (issuer, token) in [
        (builtin(IssuerKind::GitHub), gh_token()),
        (builtin(IssuerKind::GitLab), gl_token()),
        (builtin(IssuerKind::Google), google_token()),
        (builtin(IssuerKind::ActiveState), as_token()),
        (forgejo(), forgejo_token()),
    ] {
        assert_eq!(
            run(&[], &issuer, &token),
            Err("valid token, but no corresponding publisher (Publisher with matching claims was not found)".into())
        );
    }
}

#[test]
fn candidates_of_another_kind_are_skipped() {
    let mixed = vec![
        ("g", GL_LABEL, PublisherPolicy::GitLab(gl(None))),
        ("o", GOOGLE_LABEL, google(None)),
        ("x", GEN_LABEL, generic(&[("sub", "repo:octo/app:*")])),
    ];
    // Nothing fits a GitHub issuer: PyPI's text, no explanation.
    assert_eq!(
        run(&mixed, &builtin(IssuerKind::GitHub), &gh_token()),
        Err(refused(NOT_FOUND, None))
    );
    // A GitHub publisher does not apply to a generic issuer, even with matching claims.
    let gh_only = gh_one(gh(None, None));
    let token = with(
        gh_token(),
        "iss",
        json!("https://code.example.com/api/actions"),
    );
    assert_eq!(
        run(&gh_only, &forgejo(), &token),
        Err(refused(NOT_FOUND, None))
    );
}

#[test]
fn explain_names_the_candidate_with_fewest_differences() {
    let far = GitHubPolicy {
        owner: "other".into(),
        repository: "thing".into(),
        ..gh(Some("7"), None)
    };
    let near = GitHubPolicy {
        workflow: "publish.yml".into(),
        ..gh(Some("42"), None)
    };
    let candidates = vec![
        (
            "far",
            "github:other/thing release.yml",
            PublisherPolicy::GitHub(far),
        ),
        (
            "near",
            "github:octo/app publish.yml",
            PublisherPolicy::GitHub(near),
        ),
    ];
    assert_eq!(
        run(&candidates, &builtin(IssuerKind::GitHub), &gh_token()),
        Err(refused(
            NOT_FOUND,
            Some(
                "github:octo/app publish.yml: claim 'job_workflow_ref' expected \
                 'octo/app/.github/workflows/publish.yml@<ref or sha>'"
            )
        ))
    );
}

#[test]
fn explain_lists_every_differing_declared_claim_in_order() {
    let far = GitHubPolicy {
        owner: "other".into(),
        repository: "thing".into(),
        ..gh(Some("7"), Some("prod"))
    };
    let candidates = vec![(
        "far",
        "github:other/thing release.yml",
        PublisherPolicy::GitHub(far),
    )];
    // Another owner's publisher: explained to operators only.
    assert_stranger(
        &candidates,
        &builtin(IssuerKind::GitHub),
        &gh_token(),
        NOT_FOUND,
        "github:other/thing release.yml: claim 'repository' expected 'other/thing'; \
         claim 'repository_owner' expected 'other'; claim 'repository_owner_id' expected '7'; \
         claim 'job_workflow_ref' expected 'other/thing/.github/workflows/release.yml@<ref or sha>'; \
         claim 'environment' expected 'prod'",
    );
}

#[test]
fn explain_ties_go_to_the_first_candidate() {
    let a = generic(&[("sub", "repo:org/app:ref:refs/heads/main")]);
    let b = generic(&[("sub", "repo:org/app:ref:refs/heads/dev")]);
    let candidates = vec![("a", "first", a), ("b", "second", b)];
    assert_stranger(
        &candidates,
        &forgejo(),
        &forgejo_token(),
        NOT_FOUND,
        "first: claim 'sub' expected 'repo:org/app:ref:refs/heads/main'",
    );
}

#[test]
fn explain_never_reveals_token_values() {
    let secretive = json!({
        "iss": "https://code.example.com/api/actions",
        "aud": "wharf",
        "sub": "repo:TOKEN-SUB-VALUE",
        "repository": "TOKEN-REPOSITORY-VALUE",
        "undeclared": "TOKEN-UNDECLARED-VALUE",
    });
    let candidates = vec![
        (
            "x1",
            GEN_LABEL,
            generic(&[("sub", "repo:org/app:*"), ("repository", "org/app")]),
        ),
        ("x2", "other", generic(&[("sub", "repo:org/lib:*")])),
    ];
    assert_stranger(
        &candidates,
        &forgejo(),
        &secretive,
        NOT_FOUND,
        "other: claim 'sub' expected 'repo:org/lib:*'",
    );
    // The token's own publisher is explained to it, with the expected values only.
    let own = with(secretive.clone(), "sub", json!("repo:org/app:TOKEN-REF"));
    let no_match = run_full(&candidates, &forgejo(), &own).err();
    let err = no_match
        .as_ref()
        .map(|e| e.refusal.message.clone())
        .unwrap_or_default();
    assert_eq!(
        err,
        refused(
            "Check failed for required claim 'repository'",
            Some(&format!(
                "{GEN_LABEL}: claim 'repository' expected 'org/app'"
            ))
        )
    );
    let closest = no_match.and_then(|e| e.closest).unwrap_or_default();
    for text in [&err, &closest] {
        assert!(!text.contains("TOKEN-"), "{text}");
    }

    let gh_secret = with(
        with(gh_token(), "repository", json!("leak/app")),
        "repository_owner",
        json!("leak"),
    );
    let err = run(
        &gh_one(gh(Some("42"), Some("prod"))),
        &builtin(IssuerKind::GitHub),
        &gh_secret,
    )
    .err()
    .unwrap_or_default();
    assert!(!err.contains("leak"), "{err}");
    assert!(
        !err.contains("abc123") && !err.contains("refs/heads/main") && !err.contains("jti-1"),
        "{err}"
    );
}

#[test]
fn policies_serialise_with_a_kind_tag() {
    let p = PublisherPolicy::GitHub(gh(None, Some("prod")));
    let json = serde_json::to_value(&p).unwrap_or_default();
    assert_eq!(
        json,
        json!({"kind": "github", "owner": "octo", "repository": "app", "workflow": "release.yml", "environment": "prod"})
    );
    let back: Result<PublisherPolicy, _> = serde_json::from_value(json);
    assert_eq!(back.ok(), Some(p));
    for p in [
        PublisherPolicy::GitLab(gl(None)),
        google(Some("1")),
        PublisherPolicy::ActiveState(activestate()),
        PublisherPolicy::GitHub(reusable()),
    ] {
        let back: Result<PublisherPolicy, _> =
            serde_json::from_value(serde_json::to_value(&p).unwrap_or_default());
        assert_eq!(back.ok(), Some(p));
    }
    let kinds: Vec<String> = [
        PublisherPolicy::GitLab(gl(None)),
        PublisherPolicy::ActiveState(activestate()),
    ]
    .iter()
    .filter_map(|p| {
        serde_json::to_value(p)
            .ok()?
            .get("kind")?
            .as_str()
            .map(str::to_owned)
    })
    .collect();
    assert_eq!(kinds, vec!["gitlab", "activestate"]);
}

#[test]
fn policy_validation() {
    assert_eq!(
        PublisherPolicy::GitHub(gh(Some("42"), Some("prod"))).validate(),
        Ok(())
    );
    assert_eq!(PublisherPolicy::GitHub(reusable()).validate(), Ok(()));
    let bad_github = [
        GitHubPolicy {
            workflow: "release.json".into(),
            ..gh(None, None)
        },
        GitHubPolicy {
            workflow: ".github/workflows/release.yml".into(),
            ..gh(None, None)
        },
        GitHubPolicy {
            workflow: ".yml".into(),
            ..gh(None, None)
        },
        GitHubPolicy {
            repository: "octo/app".into(),
            ..gh(None, None)
        },
        GitHubPolicy {
            owner: String::new(),
            ..gh(None, None)
        },
        GitHubPolicy {
            owner_id: Some("abc".into()),
            ..gh(None, None)
        },
        gh(None, Some(" prod")),
        gh(None, Some("pr,od")),
        gh(None, Some("")),
        gh(None, Some(&"e".repeat(256))),
        GitHubPolicy {
            workflow_path: None,
            ..reusable()
        },
        GitHubPolicy {
            workflow_repository: Some("shared".into()),
            ..reusable()
        },
        GitHubPolicy {
            workflow_path: Some("pypi.yml".into()),
            ..reusable()
        },
        GitHubPolicy {
            workflow_path: Some(".github/workflows/sub/pypi.yml".into()),
            ..reusable()
        },
    ];
    for p in bad_github {
        assert!(
            PublisherPolicy::GitHub(p.clone()).validate().is_err(),
            "{p:?}"
        );
    }
    assert_eq!(PublisherPolicy::GitLab(gl(Some("Prod"))).validate(), Ok(()));
    let nested = GitLabPolicy {
        workflow_filepath: "ci/release.yml".into(),
        ..gl(None)
    };
    assert_eq!(PublisherPolicy::GitLab(nested).validate(), Ok(()));
    for p in [
        GitLabPolicy {
            workflow_filepath: "/ci.yml".into(),
            ..gl(None)
        },
        GitLabPolicy {
            workflow_filepath: "ci.txt".into(),
            ..gl(None)
        },
        GitLabPolicy {
            namespace: String::new(),
            ..gl(None)
        },
    ] {
        assert!(PublisherPolicy::GitLab(p).validate().is_err());
    }
    assert_eq!(google(None).validate(), Ok(()));
    assert!(
        PublisherPolicy::Google(GooglePolicy {
            email: "nope".into(),
            sub: None
        })
        .validate()
        .is_err()
    );
    assert!(
        PublisherPolicy::Google(GooglePolicy {
            email: "a@b".into(),
            sub: Some(String::new())
        })
        .validate()
        .is_err()
    );
    assert_eq!(
        PublisherPolicy::ActiveState(activestate()).validate(),
        Ok(())
    );
    assert!(
        PublisherPolicy::ActiveState(ActiveStatePolicy {
            actor_id: String::new(),
            ..activestate()
        })
        .validate()
        .is_err()
    );
}

#[test]
fn python_repr_of_claim_values() {
    assert_eq!(py_repr_value(Some(&json!(5))), "5");
    assert_eq!(py_repr_value(None), "None");
}

// ---------------------------------------------------------------- explain mode's boundary

/// Issue #12, finding 4: for each provider, a token of an unrelated identity gets PyPI's bare
/// text and none of the publisher's configuration (the operators' explanation has it); a
/// token of the publisher's own identity gets the explanation.
#[test]
fn explain_mode_only_explains_the_tokens_own_publishers() {
    struct Case {
        name: &'static str,
        issuer: Issuer,
        label: &'static str,
        policy: PublisherPolicy,
        /// Values of the publisher's configuration that a stranger must not see.
        private: &'static [&'static str],
        stranger: Value,
        own: Value,
        /// What the own token is told about the publisher.
        own_explanation: &'static str,
    }
    let private_gh = GitHubPolicy {
        owner: "hidden-org".into(),
        owner_id: Some("777".into()),
        repository: "private-repo".into(),
        workflow: "deploy-secret.yml".into(),
        environment: Some("prod-secret".into()),
        workflow_repository: None,
        workflow_path: None,
    };
    let hidden_gh = |repo: &str, owner_id: &str, workflow: &str| {
        let full = format!("hidden-org/{repo}");
        with(
            with(
                with(
                    with(gh_token(), "repository", json!(full)),
                    "repository_owner",
                    json!("hidden-org"),
                ),
                "repository_owner_id",
                json!(owner_id),
            ),
            "job_workflow_ref",
            json!(format!(
                "{full}/.github/workflows/{workflow}@refs/heads/main"
            )),
        )
    };
    let cases = [
        Case {
            name: "github, another owner",
            issuer: builtin(IssuerKind::GitHub),
            label: "github:hidden-org/private-repo deploy-secret.yml",
            policy: PublisherPolicy::GitHub(private_gh.clone()),
            private: &[
                "hidden-org",
                "private-repo",
                "777",
                "prod-secret",
                "deploy-secret",
            ],
            stranger: gh_token(),
            // The right workflow of the right repository, outside its environment.
            own: hidden_gh("private-repo", "777", "deploy-secret.yml"),
            own_explanation: "github:hidden-org/private-repo deploy-secret.yml: \
                              claim 'environment' expected 'prod-secret'",
        },
        Case {
            name: "github, the owner's login re-registered (another owner id)",
            issuer: builtin(IssuerKind::GitHub),
            label: "github:hidden-org/private-repo deploy-secret.yml",
            policy: PublisherPolicy::GitHub(private_gh.clone()),
            private: &["777", "prod-secret", "deploy-secret"],
            stranger: hidden_gh("private-repo", "666", "deploy-secret.yml"),
            // Another repository of the same owner, with the wrong workflow.
            own: hidden_gh("other-repo", "777", "release.yml"),
            own_explanation: "github:hidden-org/private-repo deploy-secret.yml: \
                              claim 'repository' expected 'hidden-org/private-repo'; \
                              claim 'job_workflow_ref' expected \
                              'hidden-org/private-repo/.github/workflows/deploy-secret.yml@<ref or sha>'; \
                              claim 'environment' expected 'prod-secret'",
        },
        Case {
            name: "gitlab",
            issuer: builtin(IssuerKind::GitLab),
            label: "gitlab:secret-group/vault ci/deploy.yml",
            policy: PublisherPolicy::GitLab(GitLabPolicy {
                namespace: "secret-group".into(),
                project: "vault".into(),
                workflow_filepath: "ci/deploy.yml".into(),
                environment: Some("prod-secret".into()),
            }),
            private: &["secret-group", "vault", "ci/deploy", "prod-secret"],
            stranger: gl_token(),
            own: with(
                with(
                    with(gl_token(), "project_path", json!("secret-group/vault")),
                    "sub",
                    json!("project_path:secret-group/vault:ref_type:branch:ref:main"),
                ),
                "ci_config_ref_uri",
                json!("gitlab.com/secret-group/vault//ci/deploy.yml@refs/heads/main"),
            ),
            own_explanation: "gitlab:secret-group/vault ci/deploy.yml: \
                              claim 'environment' expected 'prod-secret'",
        },
        Case {
            name: "google",
            issuer: builtin(IssuerKind::Google),
            label: "google:deployer@secret-proj.iam.gserviceaccount.com",
            policy: PublisherPolicy::Google(GooglePolicy {
                email: "deployer@secret-proj.iam.gserviceaccount.com".into(),
                sub: Some("98765".into()),
            }),
            private: &["deployer", "secret-proj", "98765"],
            stranger: google_token(),
            own: with(
                google_token(),
                "email",
                json!("deployer@secret-proj.iam.gserviceaccount.com"),
            ),
            own_explanation: "google:deployer@secret-proj.iam.gserviceaccount.com: \
                              claim 'sub' expected '98765'",
        },
        Case {
            name: "activestate",
            issuer: builtin(IssuerKind::ActiveState),
            label: "activestate:secret-org/vault",
            policy: PublisherPolicy::ActiveState(ActiveStatePolicy {
                organization: "secret-org".into(),
                project: "vault".into(),
                actor_id: "u-secret".into(),
                actor: None,
            }),
            private: &["secret-org", "vault", "u-secret"],
            stranger: as_token(),
            own: with(
                with(as_token(), "organization", json!("secret-org")),
                "sub",
                json!("org:secret-org:project:widget"),
            ),
            own_explanation: "activestate:secret-org/vault: claim 'sub' expected \
                              'org:secret-org:project:vault'; claim 'project' expected 'vault'; \
                              claim 'actor_id' expected 'u-secret'",
        },
        Case {
            name: "generic",
            issuer: forgejo(),
            label: "generic:repo:secret-org/*",
            policy: generic(&[("sub", "repo:secret-org/*"), ("environment", "prod-secret")]),
            private: &["secret-org", "prod-secret"],
            stranger: forgejo_token(),
            own: with(
                forgejo_token(),
                "sub",
                json!("repo:secret-org/vault:ref:main"),
            ),
            own_explanation: "generic:repo:secret-org/*: claim 'environment' expected 'prod-secret'",
        },
    ];
    for case in cases {
        let candidates = vec![("p", case.label, case.policy.clone())];
        let Some(no_match) = run_full(&candidates, &case.issuer, &case.stranger).err() else {
            panic!("{}: the stranger matched", case.name);
        };
        assert!(
            no_match.refusal.message.starts_with(PREFIX)
                && !no_match.refusal.message.contains("Closest publisher"),
            "{}: {}",
            case.name,
            no_match.refusal.message
        );
        for private in case.private {
            assert!(
                !no_match.refusal.message.contains(private),
                "{}: the stranger sees '{private}': {}",
                case.name,
                no_match.refusal.message
            );
        }
        let closest = no_match.closest.unwrap_or_default();
        assert!(
            closest.starts_with(&format!("{}: ", case.label)),
            "{}: the operators' explanation: {closest}",
            case.name
        );

        let own = run(&candidates, &case.issuer, &case.own).err();
        assert!(
            own.as_deref().is_some_and(|message| message
                .ends_with(&format!(". Closest publisher: {}", case.own_explanation))),
            "{}: the own token is told: {own:?}",
            case.name
        );
    }
}
