//! Throughput of the upload digests on a 256 MiB buffer.
//!
//! `cargo run --release -p wharf-archive --example digest_throughput [CHUNK_BYTES]`
//! (updates of 64 KiB by default).
#![allow(clippy::print_stdout)]

use std::time::Instant;

use wharf_archive::MultiHasher;

const SIZE: usize = 256 * 1024 * 1024;

fn rate(label: &str, secs: f64) {
    let mb = SIZE as f64 / 1e6;
    println!("{label:<28} {:>8.0} MB/s  ({secs:.3} s)", mb / secs);
}

fn time<F: FnMut()>(mut f: F) -> f64 {
    // best of three
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let chunk: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64 * 1024);
    println!("256 MiB buffer, updates of {chunk} bytes, best of 3");
    let mut buf = vec![0u8; SIZE];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for (label, which) in [
        ("md5", 1u8),
        ("sha256", 2),
        ("blake2b-256", 4),
        ("all three (MultiHasher)", 7),
    ] {
        let secs = time(|| {
            if which == 7 {
                let mut h = MultiHasher::new();
                for c in buf.chunks(chunk) {
                    h.update(c);
                }
                std::hint::black_box(h.finalize());
            } else {
                std::hint::black_box(wharf_archive::digest::bench_single(which, &buf, chunk));
            }
        });
        rate(label, secs);
    }
}
