//! Publisher claim policies and the matching of verified claims against them (spec b.5).
//!
//! The flow mirrors PyPI's `find_publisher_by_issuer`: the issuer kind's required claims must
//! be present (`Missing claim '<name>'`); candidates are looked up by their identity claims and
//! ordered by environment (or `sub`) preference; the first one whose checks all pass wins,
//! otherwise the first looked-up candidate's failure is the reason. Wharf adds *explain mode*
//! to the `invalid-publisher` description: the closest candidate and the claims it declares
//! that differ, with the expected values from its configuration (never the token's values).
//!
//! Explain mode only looks at the publishers the token's own identity already selects (its
//! repository or owner, project namespace, service account, organization, or `sub`; see
//! [`PublisherPolicy::shares_identity`]): another project's configuration is never shown to a
//! stranger, who gets PyPI's bare text. The explanation against *every* candidate is returned
//! separately ([`NoMatch::closest`]) for the operators' audit trail.

mod activestate;
mod generic;
mod github;
mod gitlab;
mod google;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use activestate::ActiveStatePolicy;
pub use generic::{GenericPolicy, glob_match};
pub use github::GitHubPolicy;
pub use gitlab::GitLabPolicy;
pub use google::GooglePolicy;

use crate::issuer::{Issuer, IssuerKind};
use crate::verify::Claims;
use wharf_core::messages::trusted_publishing as tp;
use wharf_core::pyrepr::repr as py_repr;
use wharf_core::refusal::Refusal;

/// PyPI's inner reason when no publisher fits.
pub const NOT_FOUND: &str = "Publisher with matching claims was not found";

/// What a publisher requires of a token's claims. Stored as JSON (`{"kind": "github", ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PublisherPolicy {
    /// GitHub Actions (github.com, enterprise issuers, GHES).
    GitHub(GitHubPolicy),
    /// GitLab CI (gitlab.com or self-managed).
    GitLab(GitLabPolicy),
    /// Google service account.
    Google(GooglePolicy),
    /// ActiveState Platform.
    ActiveState(ActiveStatePolicy),
    /// Declarative claim policy for any other CI.
    Generic(GenericPolicy),
}

/// A publisher configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

impl PublisherPolicy {
    /// The issuer kind whose tokens this policy can match.
    pub fn kind(&self) -> IssuerKind {
        match self {
            Self::GitHub(_) => IssuerKind::GitHub,
            Self::GitLab(_) => IssuerKind::GitLab,
            Self::Google(_) => IssuerKind::Google,
            Self::ActiveState(_) => IssuerKind::ActiveState,
            Self::Generic(_) => IssuerKind::Generic,
        }
    }

    /// Checks the configuration the way PyPI's forms do (workflow file names, environment
    /// names, required fields). Call before storing a publisher.
    pub fn validate(&self) -> Result<(), PolicyError> {
        match self {
            Self::GitHub(p) => p.validate(),
            Self::GitLab(p) => p.validate(),
            Self::Google(p) => p.validate(),
            Self::ActiveState(p) => p.validate(),
            Self::Generic(p) => p.validate(),
        }
    }

    /// Identity lookup (PyPI's database query): `Some(rank)` when this candidate is selected,
    /// lower ranks preferred (environment- or `sub`-specific before general).
    fn lookup(&self, claims: &Claims) -> Option<u8> {
        match self {
            Self::GitHub(p) => p.lookup(claims),
            Self::GitLab(p) => p.lookup(claims),
            Self::Google(p) => p.lookup(claims),
            Self::ActiveState(p) => p.lookup(claims),
            Self::Generic(p) => p.lookup(claims),
        }
    }

    /// PyPI's `verify_claims`: the first failing check's text.
    fn verify(&self, issuer: &Issuer, claims: &Claims) -> Result<(), String> {
        match self {
            Self::GitHub(p) => p.verify(claims),
            Self::GitLab(p) => p.verify(issuer, claims),
            Self::Google(p) => p.verify(claims),
            Self::ActiveState(p) => p.verify(claims),
            Self::Generic(p) => p.verify(claims),
        }
    }

    /// Explain mode's boundary: whether the token comes from the identity this publisher
    /// names, so that its configuration may be explained to the token's holder.
    ///
    /// - GitHub: the same owner account (the pinned `repository_owner_id`; while none is
    ///   pinned, the owner login), which covers the same repository;
    /// - GitLab: the same namespace (the part of `project_path` before the project);
    /// - Google: the same service-account `email`, or the pinned `sub`;
    /// - ActiveState: the same `organization`;
    /// - generic: the token's `sub` matches the publisher's `sub` pattern (the claim it is
    ///   looked up by).
    ///
    /// Every candidate the lookup selects shares the identity, so PyPI's inner reason never
    /// comes from a stranger's publisher either.
    pub fn shares_identity(&self, claims: &Claims) -> bool {
        self.lookup(claims).is_some()
            || match self {
                Self::GitHub(p) => p.shares_identity(claims),
                Self::GitLab(p) => p.shares_identity(claims),
                Self::Google(p) => p.shares_identity(claims),
                Self::ActiveState(p) => p.shares_identity(claims),
                Self::Generic(_) => false,
            }
    }

    /// Explain mode: each declared claim that differs, with the value the policy expects.
    fn differences(&self, issuer: &Issuer, claims: &Claims) -> Vec<Difference> {
        match self {
            Self::GitHub(p) => p.differences(claims),
            Self::GitLab(p) => p.differences(issuer, claims),
            Self::Google(p) => p.differences(claims),
            Self::ActiveState(p) => p.differences(claims),
            Self::Generic(p) => p.differences(claims),
        }
    }

    fn matched(&self, id: &str, issuer: &Issuer, claims: &Claims) -> Matched {
        let mut matched = Matched {
            id: id.to_owned(),
            pin_owner_id: None,
            stored_claims: Value::Object(Default::default()),
            publisher_url: None,
        };
        match self {
            Self::GitHub(p) => p.fill_matched(issuer, claims, &mut matched),
            Self::GitLab(p) => p.fill_matched(issuer, claims, &mut matched),
            Self::ActiveState(p) => matched.publisher_url = Some(p.publisher_url()),
            Self::Google(_) | Self::Generic(_) => {}
        }
        matched
    }
}

/// One publisher to try, as the caller stores it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The caller's publisher id, returned in [`Matched::id`].
    pub id: &'a str,
    /// Human name shown by explain mode, e.g. `github:octo/app release.yml`.
    pub label: &'a str,
    /// The claim policy.
    pub policy: &'a PublisherPolicy,
}

/// The publisher that accepted the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// [`Candidate::id`] of the winner.
    pub id: String,
    /// GitHub policy without `owner_id`: the token's `repository_owner_id`, to pin it from now on.
    pub pin_owner_id: Option<String>,
    /// PyPI's "additional" claims kept with the minted token: GitHub `{ref, sha}`, GitLab
    /// `{ref_path, sha}`, others `{}`.
    pub stored_claims: Value,
    /// Where the publish came from (GitHub `https://github.com/<repo>/commit/<sha>`).
    pub publisher_url: Option<String>,
}

/// Why no publisher accepted a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoMatch {
    /// What the caller is told: `invalid-publisher` with PyPI's inner reason, explained only
    /// against the publishers the token's own identity selects.
    pub refusal: Refusal,
    /// For operators only (the audit trail, never the caller nor a public event): the closest
    /// publisher among every candidate of the issuer's kind and what it expects,
    /// `<label>: claim 'a' expected 'x'; …`. `None` without candidates.
    pub closest: Option<String>,
}

impl From<NoMatch> for Refusal {
    fn from(no_match: NoMatch) -> Refusal {
        no_match.refusal
    }
}

/// A declared claim that did not match, and what the policy expects.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Difference {
    claim: String,
    expected: String,
}

impl Difference {
    fn new(claim: &str, expected: impl Into<String>) -> Self {
        Self {
            claim: claim.to_owned(),
            expected: expected.into(),
        }
    }

    fn owned(claim: String, expected: String) -> Self {
        Self { claim, expected }
    }
}

/// Matches verified `claims` from `issuer` against the candidates.
///
/// Candidates whose policy kind does not fit the issuer kind are skipped; pass the publishers
/// registered for this issuer. On failure the refusal is `invalid-publisher` with PyPI's inner
/// reason, followed (when a fitting candidate shares the token's identity) by Wharf's
/// explanation naming the closest such candidate; [`NoMatch::closest`] has the explanation
/// against every fitting candidate, for operators.
pub fn match_publisher(
    candidates: &[Candidate<'_>],
    issuer: &Issuer,
    claims: &Claims,
) -> Result<Matched, NoMatch> {
    let fitting: Vec<&Candidate<'_>> = candidates
        .iter()
        .filter(|c| c.policy.kind() == issuer.kind)
        .collect();

    if let Err(reason) = kind_preconditions(issuer.kind, claims) {
        return Err(no_match(&reason, &fitting, issuer, claims));
    }
    if fitting.is_empty() {
        return Err(NoMatch {
            refusal: tp::invalid_publisher(NOT_FOUND),
            closest: None,
        });
    }

    let mut selected: Vec<(u8, usize, &Candidate<'_>)> = fitting
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.policy.lookup(claims).map(|rank| (rank, i, *c)))
        .collect();
    selected.sort_by_key(|(rank, i, _)| (*rank, *i));

    let mut first_failure = None;
    for (_, _, candidate) in selected {
        match candidate.policy.verify(issuer, claims) {
            Ok(()) => return Ok(candidate.policy.matched(candidate.id, issuer, claims)),
            Err(reason) => {
                tracing::debug!(publisher = candidate.id, %reason, "publisher check failed");
                first_failure.get_or_insert(reason);
            }
        }
    }
    let reason = first_failure.unwrap_or_else(|| NOT_FOUND.to_owned());
    Err(no_match(&reason, &fitting, issuer, claims))
}

/// Checks every publisher of a kind needs before lookup (PyPI's `check_claims_existence`,
/// plus GitHub's workflow-filename extraction).
fn kind_preconditions(kind: IssuerKind, claims: &Claims) -> Result<(), String> {
    let required: &[&str] = match kind {
        IssuerKind::GitHub => github::REQUIRED_CLAIMS,
        IssuerKind::GitLab => gitlab::REQUIRED_CLAIMS,
        IssuerKind::Google => google::REQUIRED_CLAIMS,
        IssuerKind::ActiveState => activestate::REQUIRED_CLAIMS,
        IssuerKind::Generic => &[],
    };
    if let Some(missing) = required.iter().find(|name| claims.get(name).is_none()) {
        return Err(missing_claim(missing));
    }
    if kind == IssuerKind::GitHub {
        github::preconditions(claims)?;
    }
    Ok(())
}

fn no_match(reason: &str, fitting: &[&Candidate<'_>], issuer: &Issuer, claims: &Claims) -> NoMatch {
    let own: Vec<&Candidate<'_>> = fitting
        .iter()
        .copied()
        .filter(|c| c.policy.shares_identity(claims))
        .collect();
    let mut refusal = tp::invalid_publisher(reason);
    if let Some(explanation) = explain(&own, issuer, claims) {
        refusal.message.push_str(". Closest publisher: ");
        refusal.message.push_str(&explanation);
    }
    NoMatch {
        refusal,
        closest: explain(fitting, issuer, claims),
    }
}

/// `<label>: claim 'a' expected 'x'; claim 'b' expected 'y'` for the candidate with the
/// fewest differing declared claims (first one on a tie).
fn explain(candidates: &[&Candidate<'_>], issuer: &Issuer, claims: &Claims) -> Option<String> {
    let (candidate, differences) = candidates
        .iter()
        .map(|c| (*c, c.policy.differences(issuer, claims)))
        .min_by_key(|(_, d)| d.len())?;
    let detail = if differences.is_empty() {
        "all declared claims match".to_owned()
    } else {
        differences
            .iter()
            .map(|d| format!("claim '{}' expected '{}'", d.claim, d.expected))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Some(format!("{}: {detail}", candidate.label))
}

fn missing_claim(name: &str) -> String {
    format!("Missing claim {}", py_repr(name))
}

fn check_failed_required(name: &str) -> String {
    format!("Check failed for required claim {}", py_repr(name))
}

fn check_failed_optional(name: &str) -> String {
    format!("Check failed for optional claim {}", py_repr(name))
}

/// A claim as a non-empty string (Python truthiness for the string claims PyPI reads).
fn non_empty<'c>(claims: &'c Claims, name: &str) -> Option<&'c str> {
    claims.get_str(name).filter(|s| !s.is_empty())
}

/// Python's `repr()` of a JSON claim value (strings quoted, others as JSON).
fn py_repr_value(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => py_repr(s),
        Some(Value::Bool(true)) => "True".to_owned(),
        Some(Value::Bool(false)) => "False".to_owned(),
        Some(other) => other.to_string(),
        None => "None".to_owned(),
    }
}

/// PyPI's `<name>@<ref|sha>` check shared by GitHub's `job_workflow_ref` and GitLab's
/// `ci_config_ref_uri`: `ground_truth@ref` or `ground_truth@sha`, exact.
fn check_ref_claim(
    claim_name: &str,
    ground_truth: &str,
    claim: Option<&Value>,
    refs: [Option<&str>; 2],
) -> Result<(), String> {
    let value = claim.and_then(Value::as_str).unwrap_or_default();
    let mut expected: Vec<String> = refs
        .iter()
        .flatten()
        .map(|r| format!("{ground_truth}@{r}"))
        .collect();
    expected.sort();
    expected.dedup();
    if value.is_empty() || !expected.iter().any(|e| e == value) {
        let list = expected
            .iter()
            .map(|e| py_repr(e))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "The {claim_name} claim does not match, expecting one of [{list}], got {}",
            py_repr_value(claim)
        ));
    }
    Ok(())
}

/// Shared environment-name rules (PyPI's GitHub form).
fn validate_environment(env: Option<&str>) -> Result<(), PolicyError> {
    let Some(env) = env else { return Ok(()) };
    if env.is_empty() {
        return Err(PolicyError(
            "environment must not be empty; omit it instead".to_owned(),
        ));
    }
    if env.chars().count() > 255 {
        return Err(PolicyError(
            "environment name is too long (maximum 255 characters)".to_owned(),
        ));
    }
    if env.trim() != env {
        return Err(PolicyError(
            "environment name must not start or end with whitespace".to_owned(),
        ));
    }
    if env
        .chars()
        .any(|c| c.is_control() || matches!(c, '\'' | '"' | '`' | ',' | ';' | '\\'))
    {
        return Err(PolicyError(
            "environment name must not contain control characters or ' \" ` , ; \\".to_owned(),
        ));
    }
    Ok(())
}

fn require_non_empty(field: &str, value: &str) -> Result<(), PolicyError> {
    if value.trim().is_empty() {
        return Err(PolicyError(format!("{field} must not be empty")));
    }
    Ok(())
}

/// `x.yml` or `x.yaml` with a non-empty stem.
fn is_workflow_file(name: &str) -> bool {
    name.strip_suffix(".yml")
        .or_else(|| name.strip_suffix(".yaml"))
        .is_some_and(|stem| !stem.is_empty())
}

/// Case-insensitive comparison as Python's `a.lower() == b.lower()`.
fn ci_eq(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

#[cfg(test)]
mod tests;
