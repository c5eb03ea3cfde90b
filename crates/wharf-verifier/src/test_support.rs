//! Fixtures for tests of the verifier and of the services around it (feature `test-support`).

use wharf_index::{Index, NewPublisher, NewToken};

use crate::{TOKEN_PREFIX, TokenKeys};

/// Stores a GitHub publisher (`pub-burn`, of `project_ids`) and a token minted for it under
/// `root_key`, sealed with `keys`, as trusted publishing stores them; answers the token's
/// identifier and its text.
pub async fn store_minted_token(
    index: &dyn Index,
    keys: &TokenKeys,
    project_ids: Vec<String>,
    root_key: &[u8],
) -> (String, String) {
    index
        .insert_publisher(&NewPublisher {
            id: "pub-burn".to_owned(),
            kind: "github".to_owned(),
            issuer_url: "https://token.actions.githubusercontent.com".to_owned(),
            policy: r#"{"repository":"octo/demo","workflow":"release.yml"}"#.to_owned(),
            label: "burn".to_owned(),
            token_ttl_seconds: Some(900),
            pending_project_name: None,
            pending_project_ultranormalized: None,
            pending_user_id: None,
            project_ids,
            created_at: 0,
        })
        .await
        .expect("the publisher");
    let id = uuid::Uuid::new_v4().to_string();
    let now = jiff::Timestamp::now().as_second();
    index
        .insert_token(&NewToken {
            id: id.clone(),
            user_id: None,
            publisher_id: Some("pub-burn".to_owned()),
            additional: None,
            description: String::new(),
            root_key: keys.seal(&id, root_key),
            caveats: Vec::new(),
            created_at: now,
            expires_at: Some(now + 900),
        })
        .await
        .expect("the token");
    let macaroon = wharf_macaroon::Macaroon::new("wharf", id.as_bytes(), root_key);
    (id, wharf_macaroon::encode_token(TOKEN_PREFIX, &macaroon))
}
