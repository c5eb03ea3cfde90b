//! Google service accounts (PyPI `models/google.py`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Difference, PolicyError, check_failed_optional, check_failed_required, non_empty,
    require_non_empty,
};
use crate::verify::Claims;

pub(super) const REQUIRED_CLAIMS: &[&str] = &["email", "email_verified"];

/// A Google service-account publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GooglePolicy {
    /// Service-account email, exact.
    pub email: String,
    /// Subject (the account's unique id), exact; `None`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

impl GooglePolicy {
    pub(super) fn validate(&self) -> Result<(), PolicyError> {
        require_non_empty("email", &self.email)?;
        if !self.email.contains('@') {
            return Err(PolicyError(
                "email must be a service-account email address".to_owned(),
            ));
        }
        if self.sub.as_deref().is_some_and(str::is_empty) {
            return Err(PolicyError(
                "sub must not be empty; omit it instead".to_owned(),
            ));
        }
        Ok(())
    }

    fn email_matches(&self, claims: &Claims) -> bool {
        claims.get_str("email") == Some(self.email.as_str())
    }

    fn email_verified(claims: &Claims) -> bool {
        // Only the JSON boolean `true`; truthy strings fail.
        claims.get("email_verified") == Some(&Value::Bool(true))
    }

    fn sub_matches(&self, claims: &Claims) -> bool {
        match &self.sub {
            None => true,
            Some(sub) => non_empty(claims, "sub") == Some(sub.as_str()),
        }
    }

    /// The token is the publisher's service account: the same `email`, or the pinned `sub`.
    pub(super) fn shares_identity(&self, claims: &Claims) -> bool {
        self.email_matches(claims)
            || self
                .sub
                .as_deref()
                .is_some_and(|sub| non_empty(claims, "sub") == Some(sub))
    }

    pub(super) fn lookup(&self, claims: &Claims) -> Option<u8> {
        if !self.email_matches(claims) {
            return None;
        }
        match (&self.sub, claims.get_str("sub")) {
            (Some(sub), Some(claim)) if sub == claim => Some(0),
            (None, _) => Some(1),
            _ => None,
        }
    }

    pub(super) fn verify(&self, claims: &Claims) -> Result<(), String> {
        if !self.email_matches(claims) {
            return Err(check_failed_required("email"));
        }
        if !Self::email_verified(claims) {
            return Err(check_failed_required("email_verified"));
        }
        if !self.sub_matches(claims) {
            return Err(check_failed_optional("sub"));
        }
        Ok(())
    }

    pub(super) fn differences(&self, claims: &Claims) -> Vec<Difference> {
        let mut out = Vec::new();
        if !self.email_matches(claims) {
            out.push(Difference::new("email", self.email.clone()));
        }
        if !Self::email_verified(claims) {
            out.push(Difference::new("email_verified", "true"));
        }
        if let Some(sub) = &self.sub
            && !self.sub_matches(claims)
        {
            out.push(Difference::new("sub", sub.clone()));
        }
        out
    }
}
