//! Full token verification, mirroring Warehouse's
//! `warehouse.macaroons.caveats.verify` on top of pymacaroons' `Verifier`.

use crate::caveat::{Caveat, ParseFailure, parse_internal};
use crate::macaroon::{CaveatView, Macaroon};

/// The project a request acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectRef<'a> {
    /// PEP 503 normalized name (compared with `ProjectName` caveats and used
    /// in failure texts).
    pub normalized_name: &'a str,
    /// Project id as text (compared with `ProjectID` caveats).
    pub id: &'a str,
}

/// What the request is trying to do, for evaluating caveats.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerificationContext<'a> {
    /// Current Unix time in seconds.
    pub now: i64,
    /// The project being acted on, if any.
    pub project: Option<ProjectRef<'a>>,
    /// The authenticated user's id when the token belongs to a user.
    pub user_id: Option<&'a str>,
    /// The Trusted Publisher's id when the token was minted by OIDC exchange.
    pub oidc_publisher_id: Option<&'a str>,
}

/// Why a token was refused. `Display` gives the text PyPI puts after
/// `Invalid API Token: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// One or more caveats failed; displayed joined with `", "`.
    #[error("{}", .0.join(", "))]
    Caveats(Vec<String>),
    /// All caveats held but the HMAC chain does not match the root key.
    #[error("signatures do not match")]
    SignatureMismatch,
    /// Verification stopped on a caveat pymacaroons cannot even hand to the
    /// predicate (not UTF-8, not JSON, unhashable tag, third-party caveat)
    /// before any caveat failed: Warehouse reports `unknown error`.
    #[error("unknown error")]
    Unknown,
}

/// Verify a token: every caveat embedded in the macaroon (including ones a
/// holder added), then `stored_caveats` (those kept server-side for the
/// token), then the HMAC chain against `root_key`.
///
/// Failures are collected in order and joined with `", "`; a bad signature is
/// reported only when no caveat failed. The OIDC publisher's project
/// membership is not checked here (see [`verify_with_publisher_projects`]).
pub fn verify(
    m: &Macaroon,
    root_key: &[u8],
    stored_caveats: &[Caveat],
    ctx: &VerificationContext<'_>,
) -> Result<(), VerifyError> {
    verify_inner(m, root_key, stored_caveats, ctx, None)
}

/// [`verify`], plus Warehouse's last `OIDCPublisher` check: the project must
/// be one the publisher is attached to (`publisher_project_ids`), else
/// `OIDC scoped token is not valid for project '<name>'`.
pub fn verify_with_publisher_projects(
    m: &Macaroon,
    root_key: &[u8],
    stored_caveats: &[Caveat],
    ctx: &VerificationContext<'_>,
    publisher_project_ids: &[&str],
) -> Result<(), VerifyError> {
    verify_inner(
        m,
        root_key,
        stored_caveats,
        ctx,
        Some(publisher_project_ids),
    )
}

fn verify_inner(
    m: &Macaroon,
    root_key: &[u8],
    stored_caveats: &[Caveat],
    ctx: &VerificationContext<'_>,
    publisher_project_ids: Option<&[&str]>,
) -> Result<(), VerifyError> {
    let mut errors: Vec<String> = Vec::new();
    let mut aborted = false;

    for view in m.caveat_views() {
        let CaveatView::FirstParty(id) = view else {
            // pymacaroons raises for a third-party caveat without discharge
            aborted = true;
            break;
        };
        match parse_internal(id) {
            Ok(caveat) => {
                if let Err(e) = caveat.check_with(ctx, publisher_project_ids) {
                    errors.push(e);
                }
            }
            Err(ParseFailure::Rejected(e)) => errors.push(e),
            Err(ParseFailure::Aborted(_)) => {
                aborted = true;
                break;
            }
        }
    }
    if !aborted {
        for caveat in stored_caveats {
            if let Err(e) = caveat.check_with(ctx, publisher_project_ids) {
                errors.push(e);
            }
        }
    }

    if !errors.is_empty() {
        return Err(VerifyError::Caveats(errors));
    }
    if aborted {
        return Err(VerifyError::Unknown);
    }
    if !m.verify_signature(root_key) {
        return Err(VerifyError::SignatureMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{decode_token, mint};

    const KEY: &[u8] = b"root key";
    const PROJECT: ProjectRef<'static> = ProjectRef {
        normalized_name: "foo",
        id: "11111111-1111-1111-1111-111111111111",
    };

    fn user_ctx() -> VerificationContext<'static> {
        VerificationContext {
            now: 1_700_000_100,
            project: Some(PROJECT),
            user_id: Some("u1"),
            oidc_publisher_id: None,
        }
    }

    fn macaroon(caveats: &[&[u8]]) -> Macaroon {
        let mut m = Macaroon::new("pypi.org", b"id", KEY);
        for c in caveats {
            m.add_first_party_caveat(c);
        }
        m
    }

    #[test]
    fn ok_and_bad_signature() {
        let m = macaroon(&[br#"[3,"u1"]"#, br#"[1,["foo"]]"#]);
        assert_eq!(verify(&m, KEY, &[], &user_ctx()), Ok(()));
        let err = verify(&m, b"wrong key", &[], &user_ctx()).expect_err("bad key");
        assert_eq!(err, VerifyError::SignatureMismatch);
        assert_eq!(err.to_string(), "signatures do not match");
    }

    #[test]
    fn caveat_failure_wins_over_signature() {
        let m = macaroon(&[br#"[1,["bar"]]"#]);
        let err = verify(&m, b"wrong key", &[], &user_ctx()).expect_err("fails");
        assert_eq!(
            err.to_string(),
            "project-scoped token is not valid for project: 'foo'"
        );
    }

    #[test]
    fn failures_are_joined_in_order() {
        let m = macaroon(&[
            b"[0,10,0]",
            br#"[1,["bar"]]"#,
            b"[]",
            br#"[3,"u2"]"#,
            b"[42]",
        ]);
        let stored = [Caveat::ProjectId(vec!["other".into()])];
        let err = verify(&m, KEY, &stored, &user_ctx()).expect_err("fails");
        assert_eq!(
            err.to_string(),
            "token is expired, project-scoped token is not valid for project: 'foo', \
             caveat array cannot be empty, current user does not match user restriction \
             in token, caveat has unknown tag: 42, project-scoped token is not valid for \
             project: 'foo'"
        );
    }

    #[test]
    fn stored_caveats_are_evaluated() {
        let m = macaroon(&[]);
        assert_eq!(verify(&m, KEY, &[], &user_ctx()), Ok(()));
        let stored = [
            Caveat::RequestUser("u1".into()),
            Caveat::ProjectId(vec![PROJECT.id.into()]),
        ];
        assert_eq!(verify(&m, KEY, &stored, &user_ctx()), Ok(()));
        let anon = VerificationContext {
            user_id: None,
            ..user_ctx()
        };
        assert_eq!(
            verify(&m, KEY, &stored, &anon).map_err(|e| e.to_string()),
            Err("token with user restriction without a user".to_owned())
        );
    }

    #[test]
    fn holder_added_caveats_are_evaluated() {
        let t = mint("pypi.org", "id", KEY, &[Caveat::RequestUser("u1".into())]);
        let mut m = decode_token(&t, "pypi").expect("decodes");
        m.add_first_party_caveat(br#"[1,["bar"]]"#);
        assert_eq!(
            verify(&m, KEY, &[], &user_ctx()).map_err(|e| e.to_string()),
            Err("project-scoped token is not valid for project: 'foo'".to_owned())
        );
        let mut m = decode_token(&t, "pypi").expect("decodes");
        m.add_first_party_caveat(br#"[1,["foo"]]"#);
        assert_eq!(verify(&m, KEY, &[], &user_ctx()), Ok(()));
    }

    #[test]
    fn aborts_give_unknown_error_or_earlier_failures() {
        for bad in [&b"not json"[..], b"\xff\xfe", br#"[[1]]"#] {
            let m = macaroon(&[bad]);
            assert_eq!(verify(&m, KEY, &[], &user_ctx()), Err(VerifyError::Unknown));
            // later caveats (and stored ones) are not evaluated after an abort
            let m = macaroon(&[br#"[1,["bar"]]"#, bad, br#"[3,"u2"]"#]);
            let stored = [Caveat::RequestUser("u3".into())];
            assert_eq!(
                verify(&m, KEY, &stored, &user_ctx()).map_err(|e| e.to_string()),
                Err("project-scoped token is not valid for project: 'foo'".to_owned())
            );
        }
        assert_eq!(VerifyError::Unknown.to_string(), "unknown error");
    }

    #[test]
    fn third_party_caveat_aborts() {
        let mut bytes = vec![2, 2, 1, b'i', 0];
        bytes.extend_from_slice(&[2, 1, b'c', 4, 1, b'v', 0, 0, 6, 32]);
        bytes.extend_from_slice(&[0; 32]);
        let m = Macaroon::deserialize(&bytes).expect("parses");
        assert_eq!(verify(&m, KEY, &[], &user_ctx()), Err(VerifyError::Unknown));
    }

    #[test]
    fn oidc_minted_token() {
        let now = 1_700_000_000;
        let caveats = [
            Caveat::OidcPublisher {
                publisher_id: "pub".into(),
                oidc_claims: None,
            },
            Caveat::ProjectId(vec![PROJECT.id.into()]),
            Caveat::Expiration {
                expires_at: now + 900,
                not_before: now,
            },
        ];
        let t = mint("pypi.org", "id", KEY, &caveats);
        let m = decode_token(&t, "pypi").expect("decodes");
        let ctx = VerificationContext {
            now: now + 10,
            project: Some(PROJECT),
            user_id: None,
            oidc_publisher_id: Some("pub"),
        };
        assert_eq!(verify(&m, KEY, &[], &ctx), Ok(()));
        assert_eq!(
            verify_with_publisher_projects(&m, KEY, &[], &ctx, &[PROJECT.id]),
            Ok(())
        );
        assert_eq!(
            verify_with_publisher_projects(&m, KEY, &[], &ctx, &[]).map_err(|e| e.to_string()),
            Err("OIDC scoped token is not valid for project 'foo'".to_owned())
        );
        let late = VerificationContext {
            now: now + 900,
            ..ctx
        };
        assert_eq!(
            verify(&m, KEY, &[], &late).map_err(|e| e.to_string()),
            Err("token is expired".to_owned())
        );
        // presented without an OIDC identity
        let err = verify(&m, KEY, &[], &user_ctx()).expect_err("not OIDC");
        assert_eq!(
            err.to_string(),
            "OIDC scoped token used outside of an OIDC identified request"
        );
        let early_user = VerificationContext {
            now: now - 1,
            ..user_ctx()
        };
        assert_eq!(
            verify(&m, KEY, &[], &early_user).map_err(|e| e.to_string()),
            Err(
                "OIDC scoped token used outside of an OIDC identified request, token is expired"
                    .to_owned()
            )
        );
    }
}
