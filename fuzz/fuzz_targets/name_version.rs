//! Project name and version normalization (wharf-core): no panics, and normalization is
//! idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_core::{Version, name};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let normalized = name::normalize(text);
    assert_eq!(
        name::normalize(&normalized),
        normalized,
        "normalize is idempotent"
    );
    let ultra = name::ultranormalize(text);
    assert_eq!(
        name::ultranormalize(&ultra),
        ultra,
        "ultranormalize is idempotent"
    );
    if name::is_valid_project_name(text) {
        let _ = name::check_new_project_name(text, &[]);
    }
    let _ = name::is_stdlib_module_name(&normalized);

    if let Ok(version) = Version::parse(text) {
        let normalized = version.normalized();
        let reparsed = Version::parse(&normalized).expect("a normalized version parses");
        assert_eq!(
            reparsed.normalized(),
            normalized,
            "version normalization is stable"
        );
        let _ = version.canonical();
        let _ = (
            version.is_prerelease(),
            version.is_postrelease(),
            version.is_local(),
        );
    }
});
