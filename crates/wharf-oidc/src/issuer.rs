//! OIDC issuers: PyPI's four built-in ones and operator-managed ones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// GitHub Actions' issuer.
pub const GITHUB_ISSUER_URL: &str = "https://token.actions.githubusercontent.com";
/// GitLab.com's issuer.
pub const GITLAB_ISSUER_URL: &str = "https://gitlab.com";
/// Google's issuer.
pub const GOOGLE_ISSUER_URL: &str = "https://accounts.google.com";
/// ActiveState's issuer.
pub const ACTIVESTATE_ISSUER_URL: &str = "https://platform.activestate.com/api/v1/oauth/oidc";

/// Which claim rules apply to tokens of an issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerKind {
    /// GitHub Actions (github.com, enterprise-specific issuers, GitHub Enterprise Server).
    GitHub,
    /// GitLab CI (gitlab.com or self-managed).
    GitLab,
    /// Google Cloud service accounts.
    Google,
    /// ActiveState Platform.
    ActiveState,
    /// Any other CI; publishers are declarative claim policies.
    Generic,
}

impl IssuerKind {
    /// `github`, `gitlab`, `google`, `activestate` or `generic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Google => "google",
            Self::ActiveState => "activestate",
            Self::Generic => "generic",
        }
    }
}

impl fmt::Display for IssuerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of the issuer kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown issuer kind '{0}' (expected github, gitlab, google, activestate or generic)")]
pub struct UnknownIssuerKind(pub String);

impl FromStr for IssuerKind {
    type Err = UnknownIssuerKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "github" => Ok(Self::GitHub),
            "gitlab" => Ok(Self::GitLab),
            "google" => Ok(Self::Google),
            "activestate" => Ok(Self::ActiveState),
            "generic" => Ok(Self::Generic),
            other => Err(UnknownIssuerKind(other.to_owned())),
        }
    }
}

/// One trusted OIDC issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuer {
    /// Operator-facing name (`github` for the built-in GitHub issuer).
    pub name: String,
    /// Which claim rules apply.
    pub kind: IssuerKind,
    /// The exact `iss` value; discovery lives under `<url>/.well-known/openid-configuration`.
    pub url: String,
    /// Allow `http://` discovery and JWKS URLs (tests only).
    pub allow_http: bool,
    /// One of PyPI's four issuers (RS256 only).
    pub builtin: bool,
}

impl Issuer {
    /// An operator-managed issuer.
    pub fn operator(name: impl Into<String>, kind: IssuerKind, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            url: url.into(),
            allow_http: false,
            builtin: false,
        }
    }

    /// The same issuer with plain-HTTP URLs allowed (tests).
    pub fn with_allow_http(mut self, allow_http: bool) -> Self {
        self.allow_http = allow_http;
        self
    }

    /// The signing algorithms accepted from this issuer: RS256 for PyPI's issuers, RS256 or
    /// ES256 for operator issuers.
    pub fn allowed_algorithms(&self) -> &'static [jsonwebtoken::Algorithm] {
        use jsonwebtoken::Algorithm;
        if self.builtin {
            &[Algorithm::RS256]
        } else {
            &[Algorithm::RS256, Algorithm::ES256]
        }
    }

    /// The issuer URL without its scheme and trailing slash (`gitlab.com`), as GitLab writes it
    /// at the start of `ci_config_ref_uri`.
    pub fn host_and_path(&self) -> &str {
        let rest = self
            .url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"))
            .unwrap_or(&self.url);
        rest.trim_end_matches('/')
    }

    /// `scheme://host[:port]` of the issuer URL.
    pub(crate) fn origin(&self) -> &str {
        let scheme_len = if self.url.starts_with("https://") {
            "https://".len()
        } else if self.url.starts_with("http://") {
            "http://".len()
        } else {
            0
        };
        match self.url[scheme_len..].find('/') {
            Some(i) => &self.url[..scheme_len + i],
            None => self.url.trim_end_matches('/'),
        }
    }
}

/// PyPI's four issuers, named after their kind.
pub fn builtin_issuers() -> Vec<Issuer> {
    [
        (IssuerKind::GitHub, GITHUB_ISSUER_URL),
        (IssuerKind::GitLab, GITLAB_ISSUER_URL),
        (IssuerKind::Google, GOOGLE_ISSUER_URL),
        (IssuerKind::ActiveState, ACTIVESTATE_ISSUER_URL),
    ]
    .into_iter()
    .map(|(kind, url)| Issuer {
        name: kind.as_str().to_owned(),
        kind,
        url: url.to_owned(),
        allow_http: false,
        builtin: true,
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in [
            IssuerKind::GitHub,
            IssuerKind::GitLab,
            IssuerKind::Google,
            IssuerKind::ActiveState,
            IssuerKind::Generic,
        ] {
            assert_eq!(kind.as_str().parse::<IssuerKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert!("GitHub".parse::<IssuerKind>().is_err());
    }

    #[test]
    fn builtin_urls_are_pypis() {
        let urls: Vec<_> = builtin_issuers()
            .into_iter()
            .map(|i| (i.name, i.url, i.builtin))
            .collect();
        assert_eq!(
            urls,
            vec![
                (
                    "github".into(),
                    "https://token.actions.githubusercontent.com".into(),
                    true
                ),
                ("gitlab".into(), "https://gitlab.com".into(), true),
                ("google".into(), "https://accounts.google.com".into(), true),
                (
                    "activestate".into(),
                    "https://platform.activestate.com/api/v1/oauth/oidc".into(),
                    true
                ),
            ]
        );
    }

    #[test]
    fn host_and_origin() {
        let i = Issuer::operator(
            "ghes",
            IssuerKind::GitHub,
            "https://ghe.example.com:8443/_services/token/",
        );
        assert_eq!(i.host_and_path(), "ghe.example.com:8443/_services/token");
        assert_eq!(i.origin(), "https://ghe.example.com:8443");
        let g = Issuer::operator("gl", IssuerKind::GitLab, "https://gitlab.example.com");
        assert_eq!(g.host_and_path(), "gitlab.example.com");
        assert_eq!(g.origin(), "https://gitlab.example.com");
    }
}
