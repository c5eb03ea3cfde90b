//! GitLab CI (PyPI `models/gitlab.py`), for gitlab.com and self-managed instances.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Difference, Matched, PolicyError, check_failed_optional, check_failed_required,
    check_ref_claim, ci_eq, is_workflow_file, non_empty, require_non_empty, validate_environment,
};
use crate::issuer::Issuer;
use crate::verify::Claims;

pub(super) const REQUIRED_CLAIMS: &[&str] = &[
    "sub",
    "project_path",
    "ci_config_ref_uri",
    "jti",
    "ref_path",
    "sha",
];

/// A GitLab CI publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitLabPolicy {
    /// Namespace (user or group path, may contain `/`), case-insensitive.
    pub namespace: String,
    /// Project name, case-insensitive.
    pub project: String,
    /// Path of the CI file in the project, e.g. `.gitlab-ci.yml` or `ci/release.yml`.
    pub workflow_filepath: String,
    /// GitLab environment, case-sensitive; `None`: any or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// PyPI's lookup: the file path between `//` and the last `@`, ending in `.yml`/`.yaml`.
fn extract_filepath(ci_config_ref_uri: &str) -> Option<&str> {
    let (_, after) = ci_config_ref_uri.split_once("//")?;
    let (path, _) = after.rsplit_once('@')?;
    is_workflow_file(path).then_some(path)
}

impl GitLabPolicy {
    fn project_path(&self) -> String {
        format!("{}/{}", self.namespace, self.project)
    }

    pub(super) fn validate(&self) -> Result<(), PolicyError> {
        require_non_empty("namespace", &self.namespace)?;
        require_non_empty("project", &self.project)?;
        if self.project.contains('/') {
            return Err(PolicyError(
                "project is the last path component only".to_owned(),
            ));
        }
        if !is_workflow_file(&self.workflow_filepath) {
            return Err(PolicyError(
                "workflow file path must end with .yml or .yaml".to_owned(),
            ));
        }
        if self.workflow_filepath.starts_with('/') || self.workflow_filepath.ends_with('/') {
            return Err(PolicyError(
                "workflow file path must not start or end with /".to_owned(),
            ));
        }
        validate_environment(self.environment.as_deref())
    }

    fn project_path_matches(&self, claims: &Claims) -> bool {
        non_empty(claims, "project_path").is_some_and(|p| ci_eq(p, &self.project_path()))
    }

    fn sub_matches(&self, claims: &Claims) -> bool {
        let Some(sub) = non_empty(claims, "sub") else {
            return false;
        };
        let mut parts = sub.split(':');
        match (parts.next(), parts.next()) {
            (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => ci_eq(
                &format!("{a}:{b}"),
                &format!("project_path:{}", self.project_path()),
            ),
            _ => false,
        }
    }

    fn check_ci_config_ref_uri(&self, issuer: &Issuer, claims: &Claims) -> Result<(), String> {
        let claim = claims.get("ci_config_ref_uri");
        if claim.is_none_or(|v| v.as_str() == Some("")) {
            return Err("The ci_config_ref_uri claim is empty".to_owned());
        }
        let (ref_path, sha) = (non_empty(claims, "ref_path"), non_empty(claims, "sha"));
        if ref_path.is_none() || sha.is_none() {
            return Err("The ref_path and sha claims are empty".to_owned());
        }
        // GitLab writes its canonical project path; use it when it matches ours.
        let project_path = if self.project_path_matches(claims) {
            claims.get_str("project_path").map(str::to_owned)
        } else {
            None
        }
        .unwrap_or_else(|| self.project_path());
        let ground_truth = format!(
            "{}/{project_path}//{}",
            issuer.host_and_path(),
            self.workflow_filepath
        );
        check_ref_claim("ci_config_ref_uri", &ground_truth, claim, [ref_path, sha])
    }

    fn environment_matches(&self, claims: &Claims) -> bool {
        match &self.environment {
            None => true,
            Some(env) => non_empty(claims, "environment") == Some(env.as_str()),
        }
    }

    /// The token's project is in this publisher's namespace (the part of `project_path`
    /// before the project name, or GitLab's `namespace_path` claim), compared as paths are.
    pub(super) fn shares_identity(&self, claims: &Claims) -> bool {
        non_empty(claims, "project_path")
            .and_then(|path| path.rsplit_once('/').map(|(namespace, _)| namespace))
            .or_else(|| non_empty(claims, "namespace_path"))
            .is_some_and(|namespace| ci_eq(namespace, &self.namespace))
    }

    /// PyPI also matches the issuer URL here; the caller passes this issuer's publishers.
    pub(super) fn lookup(&self, claims: &Claims) -> Option<u8> {
        let (namespace, project) = claims.get_str("project_path")?.rsplit_once('/')?;
        if !ci_eq(namespace, &self.namespace) || !ci_eq(project, &self.project) {
            return None;
        }
        if extract_filepath(claims.get_str("ci_config_ref_uri")?)? != self.workflow_filepath {
            return None;
        }
        match (non_empty(claims, "environment"), &self.environment) {
            (Some(claim), Some(env)) if claim == env => Some(0),
            (_, None) => Some(1),
            _ => None,
        }
    }

    pub(super) fn verify(&self, issuer: &Issuer, claims: &Claims) -> Result<(), String> {
        if !self.sub_matches(claims) {
            return Err(check_failed_required("sub"));
        }
        if !self.project_path_matches(claims) {
            return Err(check_failed_required("project_path"));
        }
        self.check_ci_config_ref_uri(issuer, claims)?;
        if non_empty(claims, "jti").is_none() {
            return Err(check_failed_required("jti"));
        }
        if !self.environment_matches(claims) {
            return Err(check_failed_optional("environment"));
        }
        Ok(())
    }

    pub(super) fn differences(&self, issuer: &Issuer, claims: &Claims) -> Vec<Difference> {
        let mut out = Vec::new();
        if !self.sub_matches(claims) {
            out.push(Difference::new(
                "sub",
                format!("project_path:{}", self.project_path()),
            ));
        }
        if !self.project_path_matches(claims) {
            out.push(Difference::new("project_path", self.project_path()));
        }
        if self.check_ci_config_ref_uri(issuer, claims).is_err() {
            out.push(Difference::new(
                "ci_config_ref_uri",
                format!(
                    "{}/{}//{}@<ref_path or sha>",
                    issuer.host_and_path(),
                    self.project_path(),
                    self.workflow_filepath
                ),
            ));
        }
        if let Some(env) = &self.environment
            && !self.environment_matches(claims)
        {
            out.push(Difference::new("environment", env.clone()));
        }
        out
    }

    pub(super) fn fill_matched(&self, issuer: &Issuer, claims: &Claims, matched: &mut Matched) {
        matched.stored_claims = json!({
            "ref_path": claims.get("ref_path").cloned().unwrap_or(Value::Null),
            "sha": claims.get("sha").cloned().unwrap_or(Value::Null),
        });
        let base = format!(
            "{}/{}",
            issuer.url.trim_end_matches('/'),
            self.project_path()
        );
        matched.publisher_url = Some(match non_empty(claims, "sha") {
            Some(sha) => format!("{base}/commit/{sha}"),
            None => base,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filepath_extraction() {
        let cases = [
            (
                "gitlab.com/ns/proj//.gitlab-ci.yml@refs/heads/main",
                Some(".gitlab-ci.yml"),
            ),
            (
                "gitlab.com/ns/proj//ci/release.yaml@refs/tags/v1",
                Some("ci/release.yaml"),
            ),
            (
                "gitlab.com/ns/proj//a@b.yml@refs/heads/main",
                Some("a@b.yml"),
            ),
            ("gitlab.com/ns/proj/.gitlab-ci.yml@main", None),
            ("gitlab.com/ns/proj//.gitlab-ci.yml", None),
            ("gitlab.com/ns/proj//notes.txt@main", None),
        ];
        for (input, expected) in cases {
            assert_eq!(extract_filepath(input), expected, "{input}");
        }
    }
}
