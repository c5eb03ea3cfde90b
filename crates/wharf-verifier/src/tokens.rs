//! Minting API tokens for users (the admin CLI's `token create`).

use rand::Rng;
use wharf_core::name;
use wharf_index::{Index, IndexError, NewToken};
use wharf_macaroon::Caveat;

use crate::TokenKeys;

/// What a new user token may do.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// The user the token acts for.
    pub user_name: String,
    /// Restrict the token to these projects (empty: every project of the user).
    pub projects: Vec<String>,
    /// Unix seconds after which the token stops working.
    pub expires_at: Option<i64>,
    pub description: String,
    /// The macaroon location (informational; PyPI uses its domain).
    pub location: String,
}

/// Errors when minting a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No user of that name.
    #[error("no user named '{0}'")]
    UnknownUser(String),
    /// The index could not be written.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Creates a token for a user and returns the `pypi-…` string, which is shown once and never
/// stored: the index keeps only the per-token random root key, sealed under `keys`.
///
/// Like PyPI, a user-wide token carries a `RequestUser` caveat, a project-scoped one a
/// `ProjectName` caveat (plus `ProjectID` for projects that already exist, so a project that
/// is deleted and re-created under the same name is not covered), and an expiring one an
/// `Expiration` caveat.
pub async fn mint_user_token(
    index: &dyn Index,
    keys: &TokenKeys,
    request: &TokenRequest,
    now_seconds: i64,
) -> Result<(String, String), TokenError> {
    let user = index
        .find_user_by_name(&request.user_name)
        .await?
        .ok_or_else(|| TokenError::UnknownUser(request.user_name.clone()))?;

    let mut caveats = Vec::new();
    if request.projects.is_empty() {
        caveats.push(Caveat::RequestUser(user.id.clone()));
    } else {
        let mut names = Vec::new();
        let mut ids = Vec::new();
        for project in &request.projects {
            let normalized = name::normalize(project);
            if let Some(existing) = index.find_project(&normalized).await? {
                ids.push(existing.id);
            }
            names.push(normalized);
        }
        names.sort();
        names.dedup();
        caveats.push(Caveat::ProjectName(names));
        if !ids.is_empty() {
            caveats.push(Caveat::ProjectId(ids));
        }
    }
    if let Some(expires_at) = request.expires_at {
        caveats.push(Caveat::Expiration {
            expires_at,
            not_before: now_seconds,
        });
    }

    let token_id = uuid::Uuid::new_v4().to_string();
    let mut root_key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut root_key);
    let token = wharf_macaroon::mint(&request.location, &token_id, &root_key, &caveats);
    index
        .insert_token(&NewToken {
            id: token_id.clone(),
            user_id: Some(user.id),
            publisher_id: None,
            additional: None,
            description: request.description.clone(),
            root_key: keys.seal(&token_id, &root_key),
            caveats: Vec::new(),
            created_at: now_seconds.saturating_mul(1_000_000),
            expires_at: request.expires_at,
        })
        .await?;
    Ok((token_id, token))
}
