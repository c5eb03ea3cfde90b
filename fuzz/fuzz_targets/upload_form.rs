//! The upload form's fields, validated as the gateway does before it reads the file
//! (wharf-core `validate_upload_form`). Input: one `name=value` field a line; the two
//! characters `\n` inside a value stand for a newline.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_core::validate_upload_form;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fields: Vec<(String, String)> = text
        .split('\n')
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap_or((line, ""));
            (name.to_owned(), value.replace("\\n", "\n"))
        })
        .collect();
    let _ = validate_upload_form(&fields);
});
