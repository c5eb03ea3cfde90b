//! Wheel inspection: every accepted and rejected case, with PyPI's messages.

use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use proptest::prelude::*;
use wharf_archive::{ArchiveError, ArchiveLimits, inspect_wheel, looks_like_tar};
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

const FILENAME: &str = "demo-1.0-py3-none-any.whl";
const DI: &str = "demo-1.0.dist-info";
const METADATA: &[u8] = b"Metadata-Version: 2.4\nName: demo\nVersion: 1.0\n";

fn build_zip(files: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(method);
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn std_files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("demo/__init__.py".into(), b"print('hi')\n".to_vec()),
        (
            format!("{DI}/WHEEL"),
            b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n".to_vec(),
        ),
        (format!("{DI}/METADATA"), METADATA.to_vec()),
        (format!("{DI}/RECORD"), b"demo/__init__.py,,\n".to_vec()),
    ]
}

fn wheel_with(extra: &[(&str, &[u8])], drop: &[&str]) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = std_files()
        .into_iter()
        .filter(|(n, _)| !drop.iter().any(|d| n.ends_with(d)))
        .collect();
    for (n, d) in extra {
        files.push(((*n).to_owned(), d.to_vec()));
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    build_zip(&refs, CompressionMethod::Deflated)
}

fn inspect(bytes: &[u8]) -> Result<wharf_archive::WheelInspection, ArchiveError> {
    inspect_wheel(Cursor::new(bytes), FILENAME, &[], &ArchiveLimits::default())
}

fn err(bytes: &[u8]) -> ArchiveError {
    inspect(bytes).expect_err("wheel should be rejected")
}

fn zip_not_accepted(reason: &str) -> String {
    format!(
        "Invalid distribution file. ZIP archive not accepted: {reason}. See https://docs.pypi.org/archives for more information"
    )
}

/// Offsets of every record with signature `sig`.
fn find_all(hay: &[u8], sig: &[u8]) -> Vec<usize> {
    hay.windows(sig.len())
        .enumerate()
        .filter(|(_, w)| *w == sig)
        .map(|(i, _)| i)
        .collect()
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Replace one member name (same length) in local headers and/or the central directory.
fn rename(bytes: &mut [u8], from: &str, to: &str, local: bool, central: bool) {
    assert_eq!(from.len(), to.len());
    for at in find_all(bytes, from.as_bytes()) {
        // local name at +30 from "PK\3\4", central name at +46 from "PK\1\2"
        let is_local = at >= 30 && bytes[at - 30..at - 26] == *b"PK\x03\x04";
        let is_central = at >= 46 && bytes[at - 46..at - 42] == *b"PK\x01\x02";
        if (is_local && local) || (is_central && central) {
            bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
        }
    }
}

#[test]
fn accepts_a_minimal_deflated_wheel() {
    let w = inspect(&wheel_with(&[], &[])).unwrap();
    assert_eq!(w.metadata, METADATA);
    assert_eq!(w.dist_info_dir, "demo-1.0.dist-info");
}

#[test]
fn accepts_stored_members() {
    let files = std_files();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let w = inspect(&build_zip(&refs, CompressionMethod::Stored)).unwrap();
    assert_eq!(w.metadata, METADATA);
}

#[test]
fn dist_info_uses_the_raw_filename_parts() {
    // Name and version are taken verbatim from the filename (first two '-').
    let files = [
        ("Demo_Pkg-1.0.post1.dist-info/WHEEL", &b"x"[..]),
        ("Demo_Pkg-1.0.post1.dist-info/METADATA", METADATA),
        ("Demo_Pkg-1.0.post1.dist-info/RECORD", b""),
    ];
    let z = build_zip(&files, CompressionMethod::Deflated);
    let w = inspect_wheel(
        Cursor::new(&z),
        "Demo_Pkg-1.0.post1-1-py3-none-any.whl",
        &[],
        &ArchiveLimits::default(),
    )
    .unwrap();
    assert_eq!(w.dist_info_dir, "Demo_Pkg-1.0.post1.dist-info");
}

#[test]
fn rejects_a_non_zip() {
    let e = err(b"this is certainly not a zip file, just some text");
    assert!(matches!(e, ArchiveError::NotAZip));
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. File is not a zipfile"
    );
    assert!(matches!(err(b""), ArchiveError::NotAZip));
}

#[test]
fn rejects_a_truncated_wheel() {
    let z = wheel_with(&[], &[]);
    // Cut inside the central directory: no EOCD any more.
    let e = err(&z[..z.len() - 30]);
    assert!(matches!(e, ArchiveError::NotAZip), "{e:?}");
    // Cut the local data away but keep the EOCD: the directory points nowhere.
    let eocd = *find_all(&z, b"PK\x05\x06").last().unwrap();
    let mut cut = z[..40].to_vec();
    cut.extend_from_slice(&z[eocd..]);
    let e = err(&cut);
    assert!(
        matches!(e, ArchiveError::NotAZip | ArchiveError::BadZip),
        "{e:?}"
    );
}

#[test]
fn corrupt_member_data_is_a_bare_invalid_distribution() {
    let mut z = wheel_with(&[], &[]);
    // Flip a byte of WHEEL's compressed data (right after its local header).
    let name = format!("{DI}/WHEEL");
    let at = find_all(&z, name.as_bytes())[0] + name.len() + 2;
    z[at] ^= 0xFF;
    let e = err(&z);
    assert!(matches!(e, ArchiveError::BadZip), "{e:?}");
    assert_eq!(e.reason(), None);
    assert_eq!(e.upload_message(), "Invalid distribution file.");
}

#[test]
fn rejects_zip_tar_polyglot() {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_cksum();
    tar.append_data(&mut h, "demo-1.0/x", &b"abc"[..]).unwrap();
    let mut bytes = tar.into_inner().unwrap();
    assert!(looks_like_tar(&bytes));
    bytes.extend_from_slice(&wheel_with(&[], &[]));
    let e = err(&bytes);
    assert!(matches!(e, ArchiveError::ZipTarPolyglot), "{e:?}");
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. File is both a ZIP and a tar archive"
    );
}

#[test]
fn looks_like_tar_follows_python() {
    assert!(!looks_like_tar(b""));
    assert!(!looks_like_tar(&[0u8; 100]));
    assert!(
        looks_like_tar(&[0u8; 512]),
        "an all-zero block is an empty tar"
    );
    assert!(!looks_like_tar(&wheel_with(&[], &[])));
    let mut block = [b'a'; 512];
    assert!(!looks_like_tar(&block));
    // Valid checksum: unsigned sum with the field as spaces.
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let field = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(field.as_bytes());
    assert!(looks_like_tar(&block));
}

#[test]
fn rejects_unsupported_compression() {
    let mut z = wheel_with(&[], &[]);
    for at in find_all(&z, b"PK\x01\x02") {
        put_u16(&mut z, at + 10, 12); // bzip2
    }
    for at in find_all(&z, b"PK\x03\x04") {
        put_u16(&mut z, at + 8, 12);
    }
    let e = err(&z);
    assert!(matches!(e, ArchiveError::UnsupportedCompression), "{e:?}");
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. File does not use a supported compression type"
    );
}

#[test]
fn rejects_compression_ratio_over_50_past_64_mib() {
    // Declare 100 MiB uncompressed for one member (ratio rule uses declared sizes).
    let mut z = wheel_with(&[], &[]);
    let cd = find_all(&z, b"PK\x01\x02")[0];
    put_u32(&mut z, cd + 24, 100 * 1024 * 1024);
    let e = err(&z);
    assert!(matches!(e, ArchiveError::CompressionRatio(50)), "{e:?}");
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. File exceeds compression ratio of 50"
    );
}

#[test]
fn compression_ratio_needs_both_size_and_ratio() {
    // Highly compressible but small: allowed by the ratio rule.
    let big = vec![b'a'; 4 * 1024 * 1024];
    assert!(inspect(&wheel_with(&[("demo/data.txt", &big)], &[])).is_ok());
    // Same archive with a lower minimum size: rejected.
    let limits = ArchiveLimits {
        compression_ratio_min_size: 1024 * 1024,
        ..ArchiveLimits::default()
    };
    let e = inspect_wheel(
        Cursor::new(wheel_with(&[("demo/data.txt", &big)], &[])),
        FILENAME,
        &[],
        &limits,
    )
    .unwrap_err();
    assert!(matches!(e, ArchiveError::CompressionRatio(50)));
}

#[test]
fn zip_bomb_metadata_is_capped() {
    // 24 MiB of zeros compresses to ~24 KiB: under the ratio rule's 64 MiB
    // minimum, but over the 16 MiB metadata cap.
    let bomb = vec![0u8; 24 * 1024 * 1024];
    let z = wheel_with(&[(&format!("{DI}/METADATA"), &bomb)], &["METADATA"]);
    assert!(z.len() < 1024 * 1024);
    let e = err(&z);
    match &e {
        ArchiveError::MemberTooLarge { path, limit } => {
            assert_eq!(path, "demo-1.0.dist-info/METADATA");
            assert_eq!(*limit, 16 * 1024 * 1024);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.is_invalid_distribution());
}

#[test]
fn zip_bomb_lying_about_its_size_is_capped() {
    // METADATA declares 100 bytes but inflates to 4 MiB; the cap is 1 MiB.
    let bomb = vec![0u8; 4 * 1024 * 1024];
    let mut z = wheel_with(&[(&format!("{DI}/METADATA"), &bomb)], &["METADATA"]);
    let name = format!("{DI}/METADATA");
    for at in find_all(&z, name.as_bytes()) {
        if at >= 46 && z[at - 46..at - 42] == *b"PK\x01\x02" {
            put_u32(&mut z, at - 46 + 24, 100);
        } else if at >= 30 && z[at - 30..at - 26] == *b"PK\x03\x04" {
            put_u32(&mut z, at - 30 + 22, 100);
        }
    }
    let limits = ArchiveLimits {
        max_metadata_bytes: 1024 * 1024,
        ..ArchiveLimits::default()
    };
    let e = inspect_wheel(Cursor::new(&z), FILENAME, &[], &limits).unwrap_err();
    assert!(
        matches!(
            e,
            ArchiveError::MemberTooLarge { .. } | ArchiveError::BadZip
        ),
        "{e:?}"
    );
}

#[test]
fn rejects_wheel_filename_without_two_hyphens() {
    let e = inspect_wheel(
        Cursor::new(wheel_with(&[], &[])),
        "demo-1.0.whl",
        &[],
        &ArchiveLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ArchiveError::WheelFilename));
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. Unable to parse name and version from wheel filename"
    );
}

#[test]
fn rejects_missing_wheel_file() {
    let e = err(&wheel_with(&[], &["WHEEL"]));
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. WHEEL not found at demo-1.0.dist-info/WHEEL"
    );
}

#[test]
fn rejects_duplicate_names() {
    // Same content as RECORD, so the sizes agree and only the name repeats.
    let mut z = wheel_with(&[(&format!("{DI}/RECORX"), b"demo/__init__.py,,\n")], &[]);
    rename(
        &mut z,
        &format!("{DI}/RECORX"),
        &format!("{DI}/RECORD"),
        true,
        true,
    );
    let e = err(&z);
    assert_eq!(
        e.upload_message(),
        zip_not_accepted("Duplicate filename in local headers")
    );
}

#[test]
fn rejects_local_central_name_mismatch() {
    let mut z = wheel_with(&[("demo/a.py", b"a = 1")], &[]);
    rename(&mut z, "demo/a.py", "demo/b.py", true, false);
    assert_eq!(
        err(&z).upload_message(),
        zip_not_accepted("Filename not in central directory")
    );
}

#[test]
fn rejects_central_entry_pointing_at_another_member() {
    // Two members with identical sizes; swap the CD local-header offsets.
    let mut z = wheel_with(&[("demo/a.py", b"a = 1"), ("demo/b.py", b"b = 2")], &[]);
    let cds = find_all(&z, b"PK\x01\x02");
    let (a, b) = (
        cds.iter()
            .copied()
            .find(|&c| &z[c + 46..c + 55] == b"demo/a.py")
            .unwrap(),
        cds.iter()
            .copied()
            .find(|&c| &z[c + 46..c + 55] == b"demo/b.py")
            .unwrap(),
    );
    let oa: [u8; 4] = z[a + 42..a + 46].try_into().unwrap();
    let ob: [u8; 4] = z[b + 42..b + 46].try_into().unwrap();
    z[a + 42..a + 46].copy_from_slice(&ob);
    z[b + 42..b + 46].copy_from_slice(&oa);
    assert_eq!(
        err(&z).upload_message(),
        zip_not_accepted("Central directory entry does not match its local header")
    );
}

#[test]
fn rejects_mismatched_sizes() {
    let mut z = wheel_with(&[], &[]);
    let local = find_all(&z, b"PK\x03\x04")[0];
    let size = u32::from_le_bytes(z[local + 18..local + 22].try_into().unwrap());
    put_u32(&mut z, local + 18, size + 1);
    assert_eq!(
        err(&z).upload_message(),
        zip_not_accepted("Mis-matched data size")
    );
}

#[test]
fn rejects_trailing_data() {
    let mut z = wheel_with(&[], &[]);
    z.extend_from_slice(b"trailing garbage");
    assert_eq!(err(&z).upload_message(), zip_not_accepted("Trailing data"));
}

#[test]
fn rejects_prepended_data() {
    let mut z = b"hello world, prepended".to_vec();
    z.extend_from_slice(&wheel_with(&[], &[]));
    assert_eq!(
        err(&z).upload_message(),
        zip_not_accepted("Unknown record signature")
    );
}

#[test]
fn rejects_data_descriptors() {
    let mut z = wheel_with(&[], &[]);
    let local = find_all(&z, b"PK\x03\x04")[0];
    let flags = u16::from_le_bytes([z[local + 6], z[local + 7]]);
    put_u16(&mut z, local + 6, flags | 0x08);
    assert_eq!(
        err(&z).upload_message(),
        zip_not_accepted("ZIP contains a data descriptor")
    );
}

#[test]
fn accepts_an_archive_comment() {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default();
    for (n, d) in std_files() {
        w.start_file(n, opts).unwrap();
        w.write_all(&d).unwrap();
    }
    // An archive comment (in the EOCD record) is fine.
    w.set_comment("archive comment");
    let z = w.finish().unwrap().into_inner();
    assert!(inspect(&z).is_ok());
}

#[test]
fn rejects_path_traversal_and_absolute_paths() {
    let z = wheel_with(&[("../evil.py", b"x")], &[]);
    assert_eq!(
        err(&z).upload_message(),
        zip_not_accepted("Path traversal ('..') in filename")
    );
    let z = wheel_with(&[("demo/../../evil.py", b"x")], &[]);
    assert_eq!(
        err(&z).upload_message(),
        zip_not_accepted("Path traversal ('..') in filename")
    );
    let z = wheel_with(&[("/etc/evil.py", b"x")], &[]);
    assert_eq!(
        err(&z).upload_message(),
        zip_not_accepted("Absolute path in filename")
    );
    let z = wheel_with(&[("C:/evil.py", b"x")], &[]);
    assert_eq!(
        err(&z).upload_message(),
        zip_not_accepted("Absolute path in filename")
    );
    // Dots inside names are fine.
    assert!(inspect(&wheel_with(&[("demo/..hidden..py", b"x")], &[])).is_ok());
}

#[test]
fn rejects_control_characters_in_names() {
    let z = wheel_with(&[("demo/a\u{1}.py", b"x")], &[]);
    assert_eq!(
        err(&z).upload_message(),
        zip_not_accepted("Invalid character in filename")
    );
}

#[test]
fn too_many_members() {
    let limits = ArchiveLimits {
        max_members: 3,
        ..ArchiveLimits::default()
    };
    let e = inspect_wheel(Cursor::new(wheel_with(&[], &[])), FILENAME, &[], &limits).unwrap_err();
    assert!(matches!(e, ArchiveError::TooManyMembers(3)));
    assert!(e.is_invalid_distribution());
}

#[test]
fn license_files() {
    let lic = format!("{DI}/licenses/LICENSE.txt");
    let z = wheel_with(&[(&lic, b"MIT")], &[]);
    let ok = inspect_wheel(
        Cursor::new(&z),
        FILENAME,
        &["LICENSE.txt".to_owned()],
        &ArchiveLimits::default(),
    );
    assert!(ok.is_ok());
    let e = inspect_wheel(
        Cursor::new(&z),
        FILENAME,
        &["LICENSE.txt".to_owned(), "NOTICE".to_owned()],
        &ArchiveLimits::default(),
    )
    .unwrap_err();
    assert!(!e.is_invalid_distribution());
    assert_eq!(
        e.upload_message(),
        "License-File NOTICE does not exist in distribution file demo-1.0-py3-none-any.whl at demo-1.0.dist-info/licenses/NOTICE"
    );
    // A license at the dist-info root (old layout) does not count.
    let z = wheel_with(&[(&format!("{DI}/LICENSE.txt"), b"MIT")], &[]);
    assert!(
        inspect_wheel(
            Cursor::new(&z),
            FILENAME,
            &["LICENSE.txt".to_owned()],
            &ArchiveLimits::default()
        )
        .is_err()
    );
}

#[test]
fn rejects_missing_record() {
    let e = err(&wheel_with(&[], &["RECORD"]));
    assert!(!e.is_invalid_distribution());
    assert_eq!(
        e.upload_message(),
        "Wheel 'demo-1.0-py3-none-any.whl' does not contain the required RECORD file: demo-1.0.dist-info/RECORD"
    );
}

#[test]
fn rejects_missing_metadata() {
    let e = err(&wheel_with(&[], &["METADATA"]));
    assert_eq!(
        e.upload_message(),
        "Wheel 'demo-1.0-py3-none-any.whl' does not contain the required METADATA file: demo-1.0.dist-info/METADATA"
    );
}

#[test]
fn entry_points() {
    // The rules themselves are unit-tested beside them (`entry_points::tests`); here, that
    // the wheel's own entry_points.txt is what is read, and how a refusal is worded.
    let ep = format!("{DI}/entry_points.txt");
    let good = b"# comment\n[console_scripts]\ndemo = demo.cli:main\ndemo-x = demo:main [extra1, extra2]\n\n[demo.plugins]\nfoo=demo.plugins\n";
    assert!(inspect(&wheel_with(&[(&ep, good)], &[])).is_ok());
    // What PyPI accepts: values are not checked, continuation lines are values, and names
    // outside the script groups are free.
    for accepted in [
        &b"[console_scripts]\ndemo = \n"[..],
        b"[console_scripts]\ndemo = not a module\n",
        b"[a]\nx = m:f\n  continued\n",
        b"[demo.plugins]\n../x = m:f\n",
    ] {
        assert!(
            inspect(&wheel_with(&[(&ep, accepted)], &[])).is_ok(),
            "{:?}",
            String::from_utf8_lossy(accepted)
        );
    }
    // Another directory's entry_points.txt is not the wheel's.
    let elsewhere = "demo/entry_points.txt";
    assert!(inspect(&wheel_with(&[(elsewhere, b"junk")], &[])).is_ok());
    let msg = "Wheel 'demo-1.0-py3-none-any.whl' has invalid entry points defined in the entry_points.txt file";
    for bad in [
        &b"demo = demo:main\n"[..],                       // no section
        b"[console_scripts]\ndemo\n",                     // no '='
        b"[console_scripts]\n = demo:main\n",             // empty name
        b"[console_scripts\ndemo = demo:main\n",          // broken header
        b"[]\ndemo = demo:main\n",                        // empty group
        b"[a]\nx = m:f\n[a]\ny = m:g\n",                  // duplicate group
        b"[a]\nx = m:f\nx = m:g\n",                       // duplicate name
        b"[a]\nx = m:f\xff\n",                            // not UTF-8
        b"[console_scripts]\n../../bin/sh = demo:main\n", // a path as a script name
        b"[gui_scripts]\nC:\\evil = demo:main\n",
        b"[console_scripts]\nmy tool = demo:main\n",
    ] {
        let e = err(&wheel_with(&[(&ep, bad)], &[]));
        assert_eq!(
            e.upload_message(),
            msg,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert!(!e.is_invalid_distribution());
    }
}

#[test]
fn a_second_dist_info_directory_is_refused() {
    let other = "other-2.0.dist-info/METADATA";
    let e = err(&wheel_with(&[(other, METADATA)], &[]));
    assert_eq!(
        e.upload_message(),
        "Wheel 'demo-1.0-py3-none-any.whl' has more than one .dist-info directory: \
         demo-1.0.dist-info, other-2.0.dist-info"
    );
    assert!(!e.is_invalid_distribution());
    // A bare top-level name counts as pip counts it; nested ones (vendored) do not.
    assert!(matches!(
        err(&wheel_with(&[("x.dist-info", b"")], &[])),
        ArchiveError::SeveralDistInfoDirs { .. }
    ));
    let vendored = "demo/_vendor/dep-1.0.dist-info/METADATA";
    assert!(inspect(&wheel_with(&[(vendored, METADATA)], &[])).is_ok());
    // PyPI's checks come first: a missing RECORD is reported over the second directory.
    assert!(matches!(
        err(&wheel_with(&[(other, METADATA)], &["RECORD"])),
        ArchiveError::RecordMissing { .. }
    ));
}

#[test]
fn check_order_follows_pypi() {
    // Missing WHEEL is reported before framing problems…
    let mut z = wheel_with(&[], &["WHEEL"]);
    z.extend_from_slice(b"trailing");
    assert!(matches!(err(&z), ArchiveError::WheelNotFound(_)));
    // …and framing problems before the wheel-content checks.
    let mut z = wheel_with(&[], &["RECORD", "METADATA"]);
    z.extend_from_slice(b"trailing");
    assert!(matches!(err(&z), ArchiveError::ZipNotAccepted(_)));
    // License files are checked before RECORD.
    let e = inspect_wheel(
        Cursor::new(wheel_with(&[], &["RECORD"])),
        FILENAME,
        &["L".to_owned()],
        &ArchiveLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ArchiveError::LicenseFileMissing { .. }));
}

/// A reader whose reads fail after `ok` bytes.
#[derive(Debug)]
struct Failing {
    inner: Cursor<Vec<u8>>,
}

impl Read for Failing {
    fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk on fire"))
    }
}

impl Seek for Failing {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn reader_failures_are_io_errors() {
    let r = Failing {
        inner: Cursor::new(wheel_with(&[], &[])),
    };
    let e = inspect_wheel(r, FILENAME, &[], &ArchiveLimits::default()).unwrap_err();
    assert!(e.is_io(), "{e:?}");
    assert!(!e.is_invalid_distribution());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = inspect(&bytes);
    }

    #[test]
    fn never_panics_on_mutated_wheels(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut z = wheel_with(&[(&format!("{DI}/entry_points.txt"), b"[a]\nb = c:d\n")], &[]);
        for (i, b) in edits {
            let at = i.index(z.len());
            z[at] = b;
        }
        if do_cut {
            z.truncate(cut.index(z.len()));
        }
        let _ = inspect_wheel(Cursor::new(&z), FILENAME, &["x".to_owned()], &ArchiveLimits::default());
    }
}

// ---- hostile archives: nested archives, symlinks, huge central directories ----

#[test]
fn nested_archives_are_never_opened() {
    // A member that is itself a zip bomb (16 MiB of zeros inside) is stored, not inflated:
    // inspection reads only WHEEL, RECORD, METADATA and entry points.
    let inner = build_zip(
        &[("zeros.bin", &vec![0u8; 16 * 1024 * 1024])],
        CompressionMethod::Deflated,
    );
    assert!(inner.len() < 1024 * 1024, "the inner bomb is small");
    let nested = build_zip(&[("inner.zip", &inner)], CompressionMethod::Stored);
    let z = wheel_with(
        &[("demo/bomb.zip", &inner), ("demo/nested.zip", &nested)],
        &[],
    );
    let inspection = inspect(&z).expect("nested archives are opaque members");
    assert_eq!(inspection.metadata, METADATA);
    // A METADATA that is an archive is just bytes that are not core metadata.
    let z = wheel_with(&[(&format!("{DI}/METADATA"), &inner)], &["METADATA"]);
    let inspection = inspect(&z).expect("read as bytes");
    assert_eq!(inspection.metadata, inner);
}

#[test]
fn symlink_members_are_never_followed() {
    // METADATA as a symlink out of the archive: the link text is what is read.
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default();
    for (name, data) in std_files() {
        if name.ends_with("/METADATA") {
            w.add_symlink(name, "../../../../etc/passwd", opts).unwrap();
        } else {
            w.start_file(name, opts).unwrap();
            w.write_all(&data).unwrap();
        }
    }
    let z = w.finish().unwrap().into_inner();
    let inspection = inspect(&z).expect("a symlink member is a plain member here");
    assert_eq!(inspection.metadata, b"../../../../etc/passwd");
}

#[test]
fn huge_central_directory_claims_are_refused_without_allocating() {
    let z = wheel_with(&[], &[]);
    let eocd = *find_all(&z, b"PK\x05\x06").last().unwrap();
    // Classic EOCD claiming 65 535 entries in a 4 GiB directory of a tiny file.
    let mut claimed = z.clone();
    put_u16(&mut claimed, eocd + 8, 0xFFFF);
    put_u16(&mut claimed, eocd + 10, 0xFFFF);
    put_u32(&mut claimed, eocd + 12, 0xFFFF_FFF0);
    let e = err(&claimed);
    assert!(
        matches!(e, ArchiveError::NotAZip | ArchiveError::BadZip),
        "{e:?}"
    );
    // ZIP64 records claiming 2^63 entries and an exabyte directory.
    let mut zip64 = z[..eocd].to_vec();
    let cd_start = find_all(&z, b"PK\x01\x02")[0];
    let cd_size = (eocd - cd_start) as u64;
    let record_at = zip64.len() as u64;
    zip64.extend_from_slice(b"PK\x06\x06");
    zip64.extend_from_slice(&44u64.to_le_bytes());
    zip64.extend_from_slice(&[45, 0, 45, 0]);
    zip64.extend_from_slice(&[0; 8]); // disk numbers
    zip64.extend_from_slice(&(1u64 << 63).to_le_bytes());
    zip64.extend_from_slice(&(1u64 << 63).to_le_bytes());
    zip64.extend_from_slice(&(u64::MAX - 16).to_le_bytes());
    zip64.extend_from_slice(&(cd_start as u64).to_le_bytes());
    zip64.extend_from_slice(b"PK\x06\x07");
    zip64.extend_from_slice(&0u32.to_le_bytes());
    zip64.extend_from_slice(&record_at.to_le_bytes());
    zip64.extend_from_slice(&1u32.to_le_bytes());
    let mut classic = z[eocd..].to_vec();
    put_u16(&mut classic, 8, 0xFFFF);
    put_u16(&mut classic, 10, 0xFFFF);
    put_u32(&mut classic, 12, 0xFFFF_FFFF);
    put_u32(&mut classic, 16, 0xFFFF_FFFF);
    zip64.extend_from_slice(&classic);
    assert!(cd_size > 0);
    let e = err(&zip64);
    assert!(
        matches!(
            e,
            ArchiveError::TooManyMembers(_) | ArchiveError::NotAZip | ArchiveError::BadZip
        ),
        "{e:?}"
    );
    assert!(e.is_invalid_distribution());
    // Within the member limit, an exabyte-sized directory still fails on the bytes present.
    let limits = ArchiveLimits {
        max_members: u64::MAX,
        ..ArchiveLimits::default()
    };
    let e = inspect_wheel(Cursor::new(&zip64), FILENAME, &[], &limits).unwrap_err();
    assert!(
        matches!(e, ArchiveError::NotAZip | ArchiveError::BadZip),
        "{e:?}"
    );
}
