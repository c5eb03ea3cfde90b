//! GitHub Actions (PyPI `models/github.py`), plus Wharf's owner-id pinning and
//! cross-repository reusable workflows.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Difference, Matched, PolicyError, check_failed_optional, check_failed_required,
    check_ref_claim, ci_eq, is_workflow_file, missing_claim, non_empty, py_repr, py_repr_value,
    require_non_empty, validate_environment,
};
use crate::issuer::Issuer;
use crate::verify::Claims;

pub(super) const REQUIRED_CLAIMS: &[&str] = &[
    "repository",
    "repository_owner",
    "repository_owner_id",
    "job_workflow_ref",
    "jti",
    "event_name",
    "ref",
    "sha",
];

const PULL_REQUEST_TARGET: &str =
    "Publishing from a workflow invoked via 'pull_request_target' is not supported.";

/// A GitHub Actions publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitHubPolicy {
    /// Repository owner login (`repository_owner`, exact).
    pub owner: String,
    /// Numeric owner id (`repository_owner_id`, exact). `None`: any, and the match reports
    /// the token's value in [`Matched::pin_owner_id`] so the caller can pin it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// Repository name without the owner (compared case-insensitively).
    pub repository: String,
    /// Workflow file name, e.g. `release.yml`.
    pub workflow: String,
    /// GitHub environment (case-insensitive); `None`: any or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// `owner/repo` holding a reusable workflow that `workflow` calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_repository: Option<String>,
    /// Path of that reusable workflow, e.g. `.github/workflows/pypi.yml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_path: Option<String>,
}

/// PyPI's `_extract_workflow_filename`: the first `[^/]+\.(yml|yaml)` immediately followed
/// by `@` (leftmost start, longest match, so `@` may occur inside the name).
pub(crate) fn extract_workflow_filename(workflow_ref: &str) -> Option<&str> {
    let mut offset = 0;
    for segment in workflow_ref.split('/') {
        let found = segment.rmatch_indices('@').map(|(i, _)| i).find(|&i| {
            let name = &segment[..i];
            name.strip_suffix(".yml")
                .or_else(|| name.strip_suffix(".yaml"))
                .is_some_and(|stem| !stem.is_empty())
        });
        if let Some(end) = found {
            return workflow_ref.get(offset..offset + end);
        }
        offset += segment.len() + 1;
    }
    None
}

/// The web origin behind a GitHub issuer: github.com for GitHub's own issuers (including
/// enterprise-specific ones), the server itself for GitHub Enterprise Server.
fn web_origin(issuer: &Issuer) -> String {
    let origin = issuer.origin();
    if origin == "https://token.actions.githubusercontent.com" {
        "https://github.com".to_owned()
    } else {
        origin.to_owned()
    }
}

pub(super) fn preconditions(claims: &Claims) -> Result<(), String> {
    let job_workflow_ref = claims.get_str("job_workflow_ref").unwrap_or_default();
    if extract_workflow_filename(job_workflow_ref).is_none() {
        return Err("Could not job extract workflow filename from OIDC claims".to_owned());
    }
    Ok(())
}

impl GitHubPolicy {
    fn full_repository(&self) -> String {
        format!("{}/{}", self.owner, self.repository)
    }

    fn reusable(&self) -> Option<(&str, &str)> {
        Some((
            self.workflow_repository.as_deref()?,
            self.workflow_path.as_deref()?,
        ))
    }

    pub(super) fn validate(&self) -> Result<(), PolicyError> {
        require_non_empty("owner", &self.owner)?;
        require_non_empty("repository", &self.repository)?;
        if self.owner.contains('/') || self.repository.contains('/') {
            return Err(PolicyError(
                "owner and repository are separate: give the repository name without its owner"
                    .to_owned(),
            ));
        }
        if let Some(id) = &self.owner_id
            && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(PolicyError(
                "owner id must be GitHub's numeric id".to_owned(),
            ));
        }
        if !is_workflow_file(&self.workflow) || self.workflow.contains('/') {
            return Err(PolicyError(
                "workflow must be a file name ending in .yml or .yaml, without a path".to_owned(),
            ));
        }
        validate_environment(self.environment.as_deref())?;
        match (&self.workflow_repository, &self.workflow_path) {
            (None, None) => {}
            (Some(repo), Some(path)) => {
                let valid_repo = repo
                    .split_once('/')
                    .is_some_and(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'));
                if !valid_repo {
                    return Err(PolicyError(
                        "workflow repository must be OWNER/REPO".to_owned(),
                    ));
                }
                let valid_path = path
                    .strip_prefix(".github/workflows/")
                    .is_some_and(|f| is_workflow_file(f) && !f.contains('/'));
                if !valid_path {
                    return Err(PolicyError(
                        "workflow path must be .github/workflows/<file>.yml or .yaml".to_owned(),
                    ));
                }
            }
            _ => {
                return Err(PolicyError(
                    "workflow repository and workflow path go together".to_owned(),
                ));
            }
        }
        Ok(())
    }

    fn repository_matches(&self, claims: &Claims) -> bool {
        non_empty(claims, "repository").is_some_and(|r| ci_eq(r, &self.full_repository()))
    }

    /// The `owner/repo/.github/workflows/<workflow>` the token's workflow must be, spelled
    /// with the token's `repository` when that matches (GitHub's canonical case).
    fn caller_workflow(&self, claims: &Claims) -> String {
        let repository = if self.repository_matches(claims) {
            claims.get_str("repository").map(str::to_owned)
        } else {
            None
        };
        let repository = repository.unwrap_or_else(|| self.full_repository());
        format!("{repository}/.github/workflows/{}", self.workflow)
    }

    /// The token's owner is this publisher's owner: the same account by its pinned numeric
    /// id (a re-registered login with another id is a stranger), by login while none is
    /// pinned (`repository_owner`, or the owner part of `repository`).
    pub(super) fn shares_identity(&self, claims: &Claims) -> bool {
        match &self.owner_id {
            Some(id) => claims.get_str("repository_owner_id") == Some(id.as_str()),
            None => non_empty(claims, "repository_owner")
                .or_else(|| {
                    non_empty(claims, "repository").and_then(|r| r.split_once('/').map(|(o, _)| o))
                })
                .is_some_and(|owner| ci_eq(owner, &self.owner)),
        }
    }

    pub(super) fn lookup(&self, claims: &Claims) -> Option<u8> {
        let (owner, name) = claims.get_str("repository")?.split_once('/')?;
        if owner != self.owner || !ci_eq(name, &self.repository) {
            return None;
        }
        if let Some(id) = &self.owner_id
            && claims.get_str("repository_owner_id") != Some(id.as_str())
        {
            return None;
        }
        let source = if self.reusable().is_some() {
            "workflow_ref"
        } else {
            "job_workflow_ref"
        };
        if extract_workflow_filename(claims.get_str(source)?)? != self.workflow {
            return None;
        }
        match (non_empty(claims, "environment"), &self.environment) {
            (Some(claim), Some(env)) if ci_eq(claim, env) => Some(0),
            (_, None) => Some(1),
            _ => None,
        }
    }

    fn check_workflow_refs(&self, claims: &Claims) -> Result<(), String> {
        let job_workflow_ref = claims.get("job_workflow_ref");
        if job_workflow_ref.is_none_or(|v| v.as_str() == Some("")) {
            return Err("The job_workflow_ref claim is empty".to_owned());
        }
        let refs = [non_empty(claims, "ref"), non_empty(claims, "sha")];
        if refs.iter().all(Option::is_none) {
            return Err("The ref and sha claims are empty".to_owned());
        }
        let caller = self.caller_workflow(claims);
        let Some((repo, path)) = self.reusable() else {
            return check_ref_claim("job_workflow_ref", &caller, job_workflow_ref, refs);
        };
        // Cross-repository reusable workflow: job_workflow_ref names the called workflow at
        // whatever ref the caller pinned; the caller is checked through workflow_ref.
        if !is_reusable_ref(job_workflow_ref.and_then(Value::as_str), repo, path) {
            return Err(format!(
                "The job_workflow_ref claim does not match, expecting {}, got {}",
                py_repr(&format!("{repo}/{path}@<ref>")),
                py_repr_value(job_workflow_ref)
            ));
        }
        let workflow_ref = claims.get("workflow_ref");
        match workflow_ref {
            None => return Err(missing_claim("workflow_ref")),
            Some(Value::String(s)) if s.is_empty() => {
                return Err("The workflow_ref claim is empty".to_owned());
            }
            Some(_) => {}
        }
        check_ref_claim("workflow_ref", &caller, workflow_ref, refs)
    }

    pub(super) fn verify(&self, claims: &Claims) -> Result<(), String> {
        if !self.repository_matches(claims) {
            return Err(check_failed_required("repository"));
        }
        if claims.get_str("repository_owner") != Some(self.owner.as_str()) {
            return Err(check_failed_required("repository_owner"));
        }
        let owner_id_ok = match &self.owner_id {
            Some(id) => claims.get_str("repository_owner_id") == Some(id.as_str()),
            None => non_empty(claims, "repository_owner_id").is_some(),
        };
        if !owner_id_ok {
            return Err(check_failed_required("repository_owner_id"));
        }
        self.check_workflow_refs(claims)?;
        if non_empty(claims, "jti").is_none() {
            return Err(check_failed_required("jti"));
        }
        if claims.get_str("event_name") == Some("pull_request_target") {
            return Err(PULL_REQUEST_TARGET.to_owned());
        }
        if !self.environment_matches(claims) {
            return Err(check_failed_optional("environment"));
        }
        Ok(())
    }

    fn environment_matches(&self, claims: &Claims) -> bool {
        match &self.environment {
            None => true,
            Some(env) => non_empty(claims, "environment").is_some_and(|c| ci_eq(c, env)),
        }
    }

    pub(super) fn differences(&self, claims: &Claims) -> Vec<Difference> {
        let mut out = Vec::new();
        if !self.repository_matches(claims) {
            out.push(Difference::new("repository", self.full_repository()));
        }
        if claims.get_str("repository_owner") != Some(self.owner.as_str()) {
            out.push(Difference::new("repository_owner", self.owner.clone()));
        }
        if let Some(id) = &self.owner_id
            && claims.get_str("repository_owner_id") != Some(id.as_str())
        {
            out.push(Difference::new("repository_owner_id", id.clone()));
        }
        let caller = format!(
            "{}/.github/workflows/{}@<ref or sha>",
            self.full_repository(),
            self.workflow
        );
        match self.reusable() {
            None => {
                if self.check_workflow_refs(claims).is_err() {
                    out.push(Difference::new("job_workflow_ref", caller));
                }
            }
            Some((repo, path)) => {
                if !is_reusable_ref(claims.get_str("job_workflow_ref"), repo, path) {
                    out.push(Difference::new(
                        "job_workflow_ref",
                        format!("{repo}/{path}@<ref>"),
                    ));
                }
                let refs = [non_empty(claims, "ref"), non_empty(claims, "sha")];
                let ok = check_ref_claim(
                    "workflow_ref",
                    &self.caller_workflow(claims),
                    claims.get("workflow_ref"),
                    refs,
                )
                .is_ok();
                if !ok {
                    out.push(Difference::new("workflow_ref", caller));
                }
            }
        }
        if let Some(env) = &self.environment
            && !self.environment_matches(claims)
        {
            out.push(Difference::new("environment", env.clone()));
        }
        out
    }

    pub(super) fn fill_matched(&self, issuer: &Issuer, claims: &Claims, matched: &mut Matched) {
        if self.owner_id.is_none() {
            matched.pin_owner_id = claims.get_str("repository_owner_id").map(str::to_owned);
        }
        matched.stored_claims = json!({
            "ref": claims.get("ref").cloned().unwrap_or(Value::Null),
            "sha": claims.get("sha").cloned().unwrap_or(Value::Null),
        });
        let base = format!("{}/{}", web_origin(issuer), self.full_repository());
        matched.publisher_url = Some(match non_empty(claims, "sha") {
            Some(sha) => format!("{base}/commit/{sha}"),
            None => base,
        });
    }
}

/// `<repo>/<path>@<ref>` with a non-empty ref; the repository part case-insensitively.
fn is_reusable_ref(claim: Option<&str>, repo: &str, path: &str) -> bool {
    let Some(claim) = claim else { return false };
    let Some((head, rest)) = claim.split_at_checked(repo.len()) else {
        return false;
    };
    ci_eq(head, repo)
        && rest
            .strip_prefix('/')
            .and_then(|r| r.strip_prefix(path))
            .and_then(|r| r.strip_prefix('@'))
            .is_some_and(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_filename_extraction_matches_pypi_regex() {
        let cases = [
            (
                "octo/app/.github/workflows/release.yml@refs/heads/main",
                Some("release.yml"),
            ),
            (
                "octo/app/.github/workflows/release.yaml@refs/tags/v1",
                Some("release.yaml"),
            ),
            (
                "octo/app/.github/workflows/we@ird.yml@refs/heads/main",
                Some("we@ird.yml"),
            ),
            (
                "octo/app/.github/workflows/a.yml@b.yml@c",
                Some("a.yml@b.yml"),
            ),
            (
                "octo/app/.github/workflows/release.yml@refs/heads/x.yml@",
                Some("release.yml"),
            ),
            ("octo/app/.github/workflows/.yml@main", None),
            ("octo/app/.github/workflows/release.yml", None),
            ("octo/app/.github/workflows/release.json@main", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(extract_workflow_filename(input), expected, "{input}");
        }
    }

    #[test]
    fn reusable_ref_shape() {
        let ok = |c| is_reusable_ref(Some(c), "org/shared", ".github/workflows/pypi.yml");
        assert!(ok("org/shared/.github/workflows/pypi.yml@v1"));
        assert!(ok("Org/Shared/.github/workflows/pypi.yml@refs/heads/main"));
        assert!(!ok("org/shared/.github/workflows/pypi.yml@"));
        assert!(!ok("org/shared/.github/workflows/pypi.yml"));
        assert!(!ok("org/shared/.github/workflows/other.yml@v1"));
        assert!(!ok("org/sharedx/.github/workflows/pypi.yml@v1"));
        assert!(!ok("org"));
        assert!(!ok("ørg/shared/.github/workflows/pypi.yml@v1"));
    }
}
