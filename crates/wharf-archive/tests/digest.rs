//! Digest test vectors computed once with Python's hashlib:
//! `hashlib.md5(d)`, `hashlib.sha256(d)`, `hashlib.blake2b(d, digest_size=32)`.

use wharf_archive::{MultiHasher, digest_bytes, hex_digest_matches, storage_path};

const VECTORS: &[(&str, &str, &str, &str)] = &[
    (
        "",
        "d41d8cd98f00b204e9800998ecf8427e",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8",
    ),
    (
        "abc",
        "900150983cd24fb0d6963f7d28e17f72",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319",
    ),
    (
        "The quick brown fox jumps over the lazy dog",
        "9e107d9d372bb6826bd81d3542a419d6",
        "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",
        "01718cec35cd3d796dd00020e0bfecb473ad23457d063b75eff29c0ffa2e58a9",
    ),
];

#[test]
fn python_hashlib_vectors() {
    for (input, md5, sha256, blake2) in VECTORS {
        let d = digest_bytes(input.as_bytes());
        assert_eq!(d.md5_hex(), *md5, "md5 of {input:?}");
        assert_eq!(d.sha256_hex(), *sha256, "sha256 of {input:?}");
        assert_eq!(d.blake2_256_hex(), *blake2, "blake2b-256 of {input:?}");
    }
}

#[test]
fn blake2b_256_is_not_truncated_blake2b_512() {
    // hashlib.blake2b(b"abc").hexdigest()[:64]
    let truncated_512 = "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1";
    assert_ne!(digest_bytes(b"abc").blake2_256_hex(), truncated_512);
}

#[test]
fn chunked_updates_match_one_shot_for_one_mib() {
    // bytes(i % 251 for i in range(1 << 20))
    let data: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
    for chunk in [1usize, 7, 8192, 65536, 1 << 20] {
        let mut h = MultiHasher::new();
        for c in data.chunks(chunk) {
            h.update(c);
        }
        assert_eq!(h.bytes_hashed(), 1 << 20);
        let d = h.finalize();
        assert_eq!(d.md5_hex(), "8f293a2f6c19b345152f7a49bb4c643c");
        assert_eq!(
            d.sha256_hex(),
            "631b84027d6b9e52b539c4e8373622d23032dfadc64d60af87339c9037e4f769"
        );
        assert_eq!(
            d.blake2_256_hex(),
            "8a5a7a9dc3cf203ed374b0a1eea930601ad2acbfe2b4bc62cf83de4ee536528b"
        );
    }
}

#[test]
fn multihasher_is_an_io_write_sink() {
    let mut h = MultiHasher::default();
    std::io::copy(&mut &b"abc"[..], &mut h).unwrap();
    assert_eq!(h.bytes_hashed(), 3);
    assert_eq!(h.finalize(), digest_bytes(b"abc"));
}

#[test]
fn storage_path_layout() {
    let b = "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319";
    assert_eq!(
        storage_path(b, "demo-1.0.tar.gz"),
        "bd/dd/813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319/demo-1.0.tar.gz"
    );
    assert_eq!(
        storage_path(&b.to_uppercase(), "x.whl"),
        storage_path(b, "x.whl")
    );
    assert_eq!(
        digest_bytes(b"abc").storage_path("x.whl"),
        storage_path(b, "x.whl")
    );
    // Degenerate input does not panic.
    assert_eq!(storage_path("ab", "f"), "ab///f");
    assert_eq!(storage_path("", "f"), "///f");
    assert_eq!(storage_path("é", "f"), "é///f");
    assert_eq!(storage_path("aé", "f"), "///f");
}

#[test]
fn digest_comparison_is_case_insensitive() {
    let actual = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert!(hex_digest_matches(actual, actual));
    assert!(hex_digest_matches(&actual.to_uppercase(), actual));
    assert!(!hex_digest_matches(&actual[..63], actual));
    assert!(!hex_digest_matches("", actual));
    assert!(!hex_digest_matches(
        "ca7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        actual
    ));
}
