//! Declarative claim policies for any other CI (Forgejo/Gitea Actions, Buildkite, CircleCI,
//! Jenkins…): every declared claim must be present and match an exact value or a glob.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Difference, PolicyError, check_failed_required, missing_claim};
use crate::verify::Claims;

/// Claims a generic publisher requires: `name → pattern`, where a pattern is an exact string
/// or a glob (`*` any run of characters, `?` one character). `sub` must be declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "GenericPolicyRaw", into = "GenericPolicyRaw")]
pub struct GenericPolicy {
    claims: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct GenericPolicyRaw {
    claims: BTreeMap<String, String>,
}

impl TryFrom<GenericPolicyRaw> for GenericPolicy {
    type Error = PolicyError;

    fn try_from(raw: GenericPolicyRaw) -> Result<Self, Self::Error> {
        Self::new(raw.claims)
    }
}

impl From<GenericPolicy> for GenericPolicyRaw {
    fn from(policy: GenericPolicy) -> Self {
        Self {
            claims: policy.claims,
        }
    }
}

/// Claims that verification already checked or that carry no identity.
const RESERVED: &[&str] = &["iss", "aud", "exp", "iat", "nbf", "jti"];

impl GenericPolicy {
    /// A policy; `sub` must be declared and must not be only wildcards.
    pub fn new(claims: BTreeMap<String, String>) -> Result<Self, PolicyError> {
        let policy = Self { claims };
        policy.validate()?;
        Ok(policy)
    }

    /// The declared claims.
    pub fn claims(&self) -> &BTreeMap<String, String> {
        &self.claims
    }

    pub(super) fn validate(&self) -> Result<(), PolicyError> {
        let Some(sub) = self.claims.get("sub") else {
            return Err(PolicyError(
                "a generic publisher must declare the 'sub' claim".to_owned(),
            ));
        };
        if sub.chars().all(|c| c == '*' || c == '?') {
            return Err(PolicyError(
                "the 'sub' claim must not be only wildcards: it would accept every job of the issuer"
                    .to_owned(),
            ));
        }
        for (name, pattern) in &self.claims {
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(PolicyError(format!("invalid claim name {name:?}")));
            }
            if RESERVED.contains(&name.as_str()) {
                return Err(PolicyError(format!(
                    "claim '{name}' is checked by token verification and cannot be declared"
                )));
            }
            if pattern.is_empty() {
                return Err(PolicyError(format!("claim '{name}' needs a value")));
            }
        }
        Ok(())
    }

    /// The claim's value as text: strings as is, numbers and booleans as JSON writes them.
    fn claim_text(claims: &Claims, name: &str) -> Option<String> {
        match claims.get(name)? {
            Value::String(s) => Some(s.clone()),
            v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        }
    }

    fn claim_matches(claims: &Claims, name: &str, pattern: &str) -> bool {
        Self::claim_text(claims, name).is_some_and(|v| glob_match(pattern, &v))
    }

    /// Looked up by `sub`; more specific policies (more declared claims) first.
    pub(super) fn lookup(&self, claims: &Claims) -> Option<u8> {
        let sub = self.claims.get("sub")?;
        Self::claim_matches(claims, "sub", sub)
            .then(|| u8::MAX.saturating_sub(u8::try_from(self.claims.len()).unwrap_or(u8::MAX)))
    }

    pub(super) fn verify(&self, claims: &Claims) -> Result<(), String> {
        for (name, pattern) in &self.claims {
            if claims.get(name).is_none() {
                return Err(missing_claim(name));
            }
            if !Self::claim_matches(claims, name, pattern) {
                return Err(check_failed_required(name));
            }
        }
        Ok(())
    }

    pub(super) fn differences(&self, claims: &Claims) -> Vec<Difference> {
        self.claims
            .iter()
            .filter(|(name, pattern)| !Self::claim_matches(claims, name, pattern))
            .map(|(name, pattern)| Difference::owned(name.clone(), pattern.clone()))
            .collect()
    }
}

/// Glob match over characters: `*` matches any run (including `/` and nothing), `?` exactly
/// one character, everything else itself. Linear-time backtracking on the last `*`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match (p.get(pi), t.get(ti)) {
            (Some('*'), _) => {
                star = Some((pi, ti));
                pi += 1;
            }
            (Some(pc), Some(tc)) if *pc == '?' || pc == tc => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs() {
        let cases = [
            (
                "repo:org/app:ref:refs/heads/main",
                "repo:org/app:ref:refs/heads/main",
                true,
            ),
            ("repo:org/app:*", "repo:org/app:ref:refs/tags/v1", true),
            ("repo:org/app:*", "repo:org/app", false),
            (
                "repo:org/*:ref:refs/tags/v*",
                "repo:org/app:ref:refs/tags/v1.2",
                true,
            ),
            (
                "repo:org/*:ref:refs/tags/v*",
                "repo:org/app:ref:refs/heads/main",
                false,
            ),
            ("v?", "v1", true),
            ("v?", "v12", false),
            ("v?", "v", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("**", "anything", true),
            ("é?", "éü", true),
        ];
        for (p, t, expected) in cases {
            assert_eq!(glob_match(p, t), expected, "{p} vs {t}");
        }
    }

    #[test]
    fn sub_is_required() {
        let mut claims = BTreeMap::new();
        claims.insert("repository".to_owned(), "org/app".to_owned());
        assert_eq!(
            GenericPolicy::new(claims.clone()).map(|_| ()),
            Err(PolicyError(
                "a generic publisher must declare the 'sub' claim".to_owned()
            ))
        );
        claims.insert("sub".to_owned(), "**".to_owned());
        assert!(GenericPolicy::new(claims.clone()).is_err());
        claims.insert("sub".to_owned(), "repo:org/app:*".to_owned());
        assert!(GenericPolicy::new(claims.clone()).is_ok());
        claims.insert("aud".to_owned(), "x".to_owned());
        assert!(GenericPolicy::new(claims.clone()).is_err());
        claims.remove("aud");
        claims.insert("ref".to_owned(), String::new());
        assert!(GenericPolicy::new(claims).is_err());
    }

    #[test]
    fn deserialising_validates() {
        let bad: Result<GenericPolicy, _> =
            serde_json::from_value(serde_json::json!({"claims": {"repository": "x"}}));
        assert!(bad.is_err());
        let good: Result<GenericPolicy, _> =
            serde_json::from_value(serde_json::json!({"claims": {"sub": "x"}}));
        assert!(good.is_ok());
    }

    proptest! {
        #[test]
        fn literal_patterns_match_only_themselves(a in "[a-z:/]{0,12}", b in "[a-z:/]{0,12}") {
            prop_assert_eq!(glob_match(&a, &b), a == b);
        }

        #[test]
        fn star_suffix_is_prefix_match(a in "[a-z]{0,8}", b in "[a-z]{0,12}") {
            prop_assert_eq!(glob_match(&format!("{a}*"), &b), b.starts_with(&a));
        }
    }
}
