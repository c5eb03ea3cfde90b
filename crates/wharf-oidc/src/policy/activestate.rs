//! ActiveState Platform (PyPI `models/activestate.py`).

use serde::{Deserialize, Serialize};

use super::{Difference, PolicyError, check_failed_required, require_non_empty};
use crate::verify::Claims;

pub(super) const REQUIRED_CLAIMS: &[&str] =
    &["sub", "organization", "project", "actor_id", "builder"];

const BUILDER: &str = "pypi-publisher";
const ACTIVESTATE_URL: &str = "https://platform.activestate.com";

/// An ActiveState Platform publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveStatePolicy {
    /// Organization name, exact.
    pub organization: String,
    /// ActiveState project name, exact.
    pub project: String,
    /// The platform user's id, exact.
    pub actor_id: String,
    /// The platform user name (informational; not checked, as in PyPI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl ActiveStatePolicy {
    fn sub(&self) -> String {
        format!("org:{}:project:{}", self.organization, self.project)
    }

    pub(super) fn publisher_url(&self) -> String {
        format!("{ACTIVESTATE_URL}/{}/{}", self.organization, self.project)
    }

    pub(super) fn validate(&self) -> Result<(), PolicyError> {
        require_non_empty("organization", &self.organization)?;
        require_non_empty("project", &self.project)?;
        require_non_empty("actor id", &self.actor_id)
    }

    /// PyPI's `_check_sub`, with its three texts.
    fn check_sub(&self, claims: &Claims) -> Result<(), String> {
        let sub = claims.get_str("sub").unwrap_or_default();
        if sub.is_empty() {
            return Err("Missing 'subject' claim".to_owned());
        }
        let parts: Vec<&str> = sub.split(':').collect();
        let Some(first_four) = parts.get(..4) else {
            return Err("Invalid 'subject' claim. Wrong format".to_owned());
        };
        if first_four.join(":") != self.sub() {
            return Err("Invalid 'subject' claim".to_owned());
        }
        Ok(())
    }

    fn exact(&self, claims: &Claims) -> [(&'static str, &str, bool); 4] {
        [
            (
                "organization",
                &self.organization,
                claims.get_str("organization") == Some(&self.organization),
            ),
            (
                "project",
                &self.project,
                claims.get_str("project") == Some(&self.project),
            ),
            (
                "actor_id",
                &self.actor_id,
                claims.get_str("actor_id") == Some(&self.actor_id),
            ),
            (
                "builder",
                BUILDER,
                claims.get_str("builder") == Some(BUILDER),
            ),
        ]
    }

    /// The token comes from this publisher's ActiveState organization.
    pub(super) fn shares_identity(&self, claims: &Claims) -> bool {
        claims.get_str("organization") == Some(self.organization.as_str())
    }

    pub(super) fn lookup(&self, claims: &Claims) -> Option<u8> {
        let identity = self.exact(claims);
        identity[..3].iter().all(|(_, _, ok)| *ok).then_some(0)
    }

    pub(super) fn verify(&self, claims: &Claims) -> Result<(), String> {
        self.check_sub(claims)?;
        match self.exact(claims).iter().find(|(_, _, ok)| !ok) {
            Some((name, _, _)) => Err(check_failed_required(name)),
            None => Ok(()),
        }
    }

    pub(super) fn differences(&self, claims: &Claims) -> Vec<Difference> {
        let mut out = Vec::new();
        if self.check_sub(claims).is_err() {
            out.push(Difference::new("sub", self.sub()));
        }
        for (name, expected, ok) in self.exact(claims) {
            if !ok {
                out.push(Difference::new(name, expected));
            }
        }
        out
    }
}
