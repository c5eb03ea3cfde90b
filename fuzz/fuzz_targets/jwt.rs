//! The unverified JWT header/claims pre-parse that picks the OIDC issuer (wharf-oidc).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_oidc::{MAX_JWT_BYTES, peek_unverified};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if peek_unverified(text).is_ok() {
        assert!(text.len() <= MAX_JWT_BYTES);
    }
});
