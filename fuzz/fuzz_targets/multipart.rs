//! The gateway's upload form reader over a hostile body (wharf-gateway `FormReader`).
//!
//! Input: the first line is the Content-Type; the rest is the body, delivered in chunks
//! whose sizes come from the first byte, so chunk boundaries fall everywhere.
#![no_main]

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wharf_gateway::form::{FormLimits, FormPart, FormReader};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

const LIMITS: FormLimits = FormLimits {
    max_text_bytes: 64 * 1024,
    max_parts: 64,
    idle_timeout: Duration::from_secs(5),
};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk_seed, rest)) = data.split_first() else {
        return;
    };
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let Ok(content_type) = std::str::from_utf8(&rest[..split]) else {
        return;
    };
    let body = rest.get(split + 1..).unwrap_or_default();
    let chunk_size = usize::from(chunk_seed % 64) + 1;
    let chunks: Vec<Result<Bytes, Infallible>> = body
        .chunks(chunk_size)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let Ok(mut reader) = FormReader::new(futures::stream::iter(chunks), content_type, LIMITS)
    else {
        return;
    };
    runtime().block_on(async {
        let mut file_bytes = 0usize;
        loop {
            match reader.next_part().await {
                Ok(Some(FormPart::File(mut field))) => {
                    while let Ok(Some(chunk)) = FormReader::file_chunk(&mut field).await {
                        file_bytes += chunk.len();
                    }
                }
                Ok(Some(FormPart::Text { name, value })) => {
                    assert!(
                        value.len() <= LIMITS.max_text_bytes,
                        "{name} over the limit"
                    );
                }
                Ok(Some(FormPart::Signature)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        assert!(file_bytes <= body.len());
    });
});
