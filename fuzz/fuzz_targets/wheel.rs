//! Wheel inspection: zip framing checks and METADATA extraction (wharf-archive).
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use wharf_archive::{ArchiveLimits, inspect_wheel};

fuzz_target!(|data: &[u8]| {
    let limits = ArchiveLimits::default();
    let licenses = ["LICENSE".to_owned()];
    if let Ok(inspection) = inspect_wheel(
        Cursor::new(data),
        "demo-1.0-py3-none-any.whl",
        &licenses,
        &limits,
    ) {
        assert!(inspection.metadata.len() as u64 <= limits.max_metadata_bytes);
    }
    let _ = inspect_wheel(Cursor::new(data), "demo-1.0-py3-none-any.whl", &[], &limits);
});
