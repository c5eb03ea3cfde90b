//! Sdist inspection: gzip + tar walking and PKG-INFO extraction (wharf-archive).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_archive::{ArchiveLimits, inspect_sdist};

fuzz_target!(|data: &[u8]| {
    let limits = ArchiveLimits::default();
    if let Ok(inspection) = inspect_sdist(data, "demo-1.0.tar.gz", &[], &limits) {
        assert!(inspection.pkg_info.len() as u64 <= limits.max_metadata_bytes);
    }
});
