//! Core metadata (METADATA / PKG-INFO) parsing and validation (wharf-core).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_core::core_metadata::parse_core_metadata;
use wharf_core::metadata::validate_metadata;

fuzz_target!(|data: &[u8]| {
    if let Ok(metadata) = parse_core_metadata(data) {
        let _ = validate_metadata(&metadata);
        let _ = metadata.project_urls_map();
        let _ = metadata.keywords_list();
    }
});
