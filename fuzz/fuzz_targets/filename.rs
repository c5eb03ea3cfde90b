//! Distribution filename parsing and the upload filename checks (wharf-core).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_core::filename::{
    FileType, check_upload_filename, is_allowed_platform_tag, parse_sdist_filename,
    parse_wheel_filename,
};
use wharf_core::{Version, name};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the filename, the rest the project name and version it is checked
    // against (so the checks past the first ones are reached).
    let mut lines = text.splitn(3, '\n');
    let filename = lines.next().unwrap_or_default();
    let project = lines.next().unwrap_or("demo");
    let version = lines.next().unwrap_or("1.0");

    if let Ok(wheel) = parse_wheel_filename(filename) {
        let _ = wheel.normalized_name();
        let _ = wheel.parsed_version();
    }
    let _ = parse_sdist_filename(filename);
    let _ = is_allowed_platform_tag(filename);
    let Ok(version) = Version::parse(version) else {
        return;
    };
    let normalized = name::normalize(project);
    for filetype in [FileType::Sdist, FileType::BdistWheel] {
        let _ = check_upload_filename(filename, filetype, project, &normalized, &version, project);
    }
});
