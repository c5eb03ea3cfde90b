//! Macaroon token decoding, caveat parsing and full verification (wharf-macaroon).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_macaroon::{
    Caveat, Macaroon, ProjectRef, VerificationContext, decode_token, verify,
    verify_with_publisher_projects,
};

const KEY: [u8; 32] = [7; 32];

fn check(m: &Macaroon) {
    let _ = m.identifier_str();
    let _ = m.has_third_party_caveats();
    let _ = m.verify_signature(&KEY);
    let reencoded = m.serialize_v2();
    let again = Macaroon::deserialize(&reencoded).expect("a serialized macaroon deserializes");
    assert_eq!(again.signature(), m.signature());
    let contexts = [
        VerificationContext {
            now: 1_700_000_000,
            project: Some(ProjectRef {
                normalized_name: "demo",
                id: "00000000-0000-0000-0000-000000000001",
            }),
            user_id: Some("u1"),
            oidc_publisher_id: None,
        },
        VerificationContext {
            now: i64::MAX,
            project: None,
            user_id: None,
            oidc_publisher_id: Some("p1"),
        },
    ];
    for ctx in &contexts {
        let _ = verify(m, &KEY, &[], ctx);
        let _ = verify_with_publisher_projects(m, &KEY, &[], ctx, &["x"]);
    }
    for caveat in m.caveats() {
        if let Ok(parsed) = Caveat::parse(caveat) {
            for ctx in &contexts {
                let _ = parsed.check(ctx);
            }
            let _ = Caveat::parse(&parsed.to_bytes()).expect("an encoded caveat parses");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Macaroon::deserialize(data) {
        check(&m);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(m) = decode_token(text, "pypi")
    {
        check(&m);
    }
    if let Ok(caveat) = Caveat::parse(data) {
        let _ = caveat.check(&VerificationContext::default());
    }
});
