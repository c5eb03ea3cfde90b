//! Sdist inspection: every accepted and rejected case, with PyPI's messages.

use std::io::{Cursor, Read, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use tar::{Builder, EntryType, Header};
use wharf_archive::{ArchiveError, ArchiveLimits, SdistInspection, inspect_sdist};

const FILENAME: &str = "demo-1.0.tar.gz";
const PKG_INFO: &[u8] = b"Metadata-Version: 2.4\nName: demo\nVersion: 1.0\n";

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn file(b: &mut Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(EntryType::Regular);
    b.append_data(&mut h, path, data).unwrap();
}

fn dir(b: &mut Builder<Vec<u8>>, path: &str) {
    let mut h = Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_entry_type(EntryType::Directory);
    b.append_data(&mut h, path, &[][..]).unwrap();
}

/// A member written byte-for-byte (names the tar crate would refuse).
fn raw(b: &mut Builder<Vec<u8>>, name: &[u8], typeflag: u8, link: &[u8], data: &[u8]) {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(EntryType::new(typeflag));
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn pax(b: &mut Builder<Vec<u8>>, records: &[(&str, &str)], global: bool) {
    let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
    raw(
        b,
        b"PaxHeaders/x",
        if global { b'g' } else { b'x' },
        b"",
        &data,
    );
}

/// `demo-1.0/` with PKG-INFO and setup.py, plus whatever `extra` adds; gzip'd.
fn sdist(extra: impl FnOnce(&mut Builder<Vec<u8>>)) -> Vec<u8> {
    gz(&tar_bytes(extra))
}

fn tar_bytes(extra: impl FnOnce(&mut Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    dir(&mut b, "demo-1.0");
    file(&mut b, "demo-1.0/PKG-INFO", PKG_INFO);
    file(
        &mut b,
        "demo-1.0/setup.py",
        b"from setuptools import setup\nsetup()\n",
    );
    extra(&mut b);
    b.into_inner().unwrap()
}

fn inspect(bytes: &[u8]) -> Result<SdistInspection, ArchiveError> {
    inspect_sdist(bytes, FILENAME, &[], &ArchiveLimits::default())
}

fn err(bytes: &[u8]) -> ArchiveError {
    inspect(bytes).expect_err("sdist should be rejected")
}

fn tar_not_accepted(reason: &str) -> String {
    format!(
        "Invalid distribution file. tar archive not accepted: {reason}. See https://docs.pypi.org/archives for more information"
    )
}

#[test]
fn accepts_a_minimal_sdist() {
    let s = inspect(&sdist(|_| {})).unwrap();
    assert_eq!(s.pkg_info, PKG_INFO);
    assert_eq!(s.top_dir, "demo-1.0");
}

#[test]
fn accepts_without_directory_entries_and_with_dot_slash() {
    let mut b = Builder::new(Vec::new());
    raw(&mut b, b"./demo-1.0/PKG-INFO", b'0', b"", PKG_INFO);
    raw(&mut b, b"./demo-1.0/a/../setup.py", b'0', b"", b"x");
    let s = inspect(&gz(&b.into_inner().unwrap())).unwrap();
    assert_eq!(s.top_dir, "demo-1.0");
}

#[test]
fn accepts_long_names_gnu_and_pax() {
    let long = format!("demo-1.0/{}/deep.py", "d".repeat(150));
    let s = sdist(|b| {
        file(b, &long, b"x"); // GNU long name ('L')
        pax(b, &[("path", "demo-1.0/pax-named-file.txt")], false);
        raw(b, b"short", b'0', b"", b"y");
    });
    assert!(inspect(&s).is_ok());
    // The pax path is what counts (a license there is found).
    let r = inspect_sdist(
        &s[..],
        FILENAME,
        &["pax-named-file.txt".to_owned()],
        &ArchiveLimits::default(),
    );
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn pax_path_can_smuggle_a_second_top_level() {
    let s = sdist(|b| {
        pax(b, &[("path", "other-1.0/x")], false);
        raw(b, b"demo-1.0/innocent", b'0', b"", b"y");
    });
    assert!(matches!(err(&s), ArchiveError::TopLevelDirectories));
}

#[test]
fn rejects_non_tar() {
    let e = err(b"definitely not a tarball");
    assert!(matches!(e, ArchiveError::NotATar));
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. File is not a tarfile"
    );
    assert!(matches!(err(b""), ArchiveError::NotATar));
    // gzip of something that is not a tar
    assert!(matches!(err(&gz(b"hello world")), ArchiveError::NotATar));
    // empty gzip stream
    assert!(matches!(err(&gz(b"")), ArchiveError::NotATar));
}

#[test]
fn plain_tar_is_a_bare_invalid_distribution() {
    let e = err(&tar_bytes(|_| {}));
    assert!(matches!(e, ArchiveError::CorruptTar));
    assert_eq!(e.upload_message(), "Invalid distribution file.");
}

#[test]
fn rejects_truncated_and_corrupt_streams() {
    let big: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let s = sdist(|b| file(b, "demo-1.0/blob.bin", &big));
    for cut in [s.len() / 2, s.len() - 30] {
        let e = err(&s[..cut]);
        assert!(matches!(e, ArchiveError::CorruptTar), "cut {cut}: {e:?}");
        assert_eq!(e.upload_message(), "Invalid distribution file.");
    }
    let mut bad = s.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 64] {
        *b ^= 0x5A;
    }
    assert!(matches!(err(&bad), ArchiveError::CorruptTar));
}

#[test]
fn rejects_two_top_level_directories() {
    let e = err(&sdist(|b| file(b, "other/x.py", b"x")));
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. Incorrect number of top-level directories in sdist"
    );
    // A top-level file counts too.
    assert!(matches!(
        err(&sdist(|b| file(b, "README", b"x"))),
        ArchiveError::TopLevelDirectories
    ));
    // A tar with only the end-of-archive marker.
    assert!(matches!(
        err(&gz(&[0u8; 1024])),
        ArchiveError::TopLevelDirectories
    ));
}

#[test]
fn rejects_missing_pkg_info() {
    let mut b = Builder::new(Vec::new());
    file(&mut b, "demo-1.0/setup.py", b"x");
    file(&mut b, "demo-1.0/sub/PKG-INFO", PKG_INFO);
    let e = err(&gz(&b.into_inner().unwrap()));
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. PKG-INFO not found at demo-1.0/PKG-INFO"
    );
}

#[test]
fn pkg_info_must_be_a_regular_file() {
    let mut b = Builder::new(Vec::new());
    file(&mut b, "demo-1.0/real", PKG_INFO);
    raw(&mut b, b"demo-1.0/PKG-INFO", b'2', b"real", b"");
    let e = err(&gz(&b.into_inner().unwrap()));
    assert_eq!(
        e.upload_message(),
        tar_not_accepted("PKG-INFO is not a regular file")
    );
}

#[test]
fn pkg_info_is_capped() {
    let limits = ArchiveLimits {
        max_metadata_bytes: 16,
        ..ArchiveLimits::default()
    };
    let e = inspect_sdist(&sdist(|_| {})[..], FILENAME, &[], &limits).unwrap_err();
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. demo-1.0/PKG-INFO exceeds the maximum size of 16 bytes"
    );
}

#[test]
fn license_files() {
    let s = sdist(|b| {
        file(b, "demo-1.0/LICENSE", b"MIT");
        file(b, "demo-1.0/licenses/NOTICE.txt", b"n");
    });
    let lf = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(
        inspect_sdist(
            &s[..],
            FILENAME,
            &lf(&["LICENSE", "licenses/NOTICE.txt"]),
            &ArchiveLimits::default()
        )
        .is_ok()
    );
    let e = inspect_sdist(
        &s[..],
        FILENAME,
        &lf(&["LICENSE", "COPYING"]),
        &ArchiveLimits::default(),
    )
    .unwrap_err();
    assert!(!e.is_invalid_distribution());
    assert_eq!(
        e.upload_message(),
        "License-File COPYING does not exist in distribution file demo-1.0.tar.gz at demo-1.0/COPYING"
    );
}

#[test]
fn gzip_bomb_fails_fast_on_the_ratio_with_default_limits() {
    // A tar header declaring a 1 GiB member, then 1 GiB of zeros as 1024
    // concatenated gzip members of 1 MiB each (a few hundred KiB in all).
    let mut h = Header::new_gnu();
    h.set_path("demo-1.0/bomb").unwrap();
    h.set_size(1 << 30);
    h.set_entry_type(EntryType::Regular);
    h.set_cksum();
    let mut bytes = gz(h.as_bytes());
    let zeros = gz(&vec![0u8; 1 << 20]);
    for _ in 0..1024 {
        bytes.extend_from_slice(&zeros);
    }
    let started = std::time::Instant::now();
    let e = err(&bytes);
    assert!(matches!(e, ArchiveError::CompressionRatio(50)), "{e:?}");
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. File exceeds compression ratio of 50"
    );
    // It stopped at ~64 MiB, not 1 GiB.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn endless_archive_hits_the_uncompressed_cap() {
    let limits = ArchiveLimits {
        max_sdist_uncompressed: 256 * 1024,
        ..ArchiveLimits::default()
    };
    let big: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let s = sdist(|b| file(b, "demo-1.0/blob", &big));
    let e = inspect_sdist(&s[..], FILENAME, &[], &limits).unwrap_err();
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. File exceeds the maximum uncompressed size of 262144 bytes"
    );
}

#[test]
fn too_many_members() {
    let limits = ArchiveLimits {
        max_members: 10,
        ..ArchiveLimits::default()
    };
    let s = sdist(|b| {
        for i in 0..20 {
            file(b, &format!("demo-1.0/f{i}"), b"x");
        }
    });
    let e = inspect_sdist(&s[..], FILENAME, &[], &limits).unwrap_err();
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. File contains more than 10 members"
    );
}

#[test]
fn rejects_sparse_members() {
    let s = sdist(|b| raw(b, b"demo-1.0/sparse", b'S', b"", b""));
    assert_eq!(
        err(&s).upload_message(),
        tar_not_accepted("Sparse members are not allowed")
    );
    let s = sdist(|b| {
        pax(
            b,
            &[("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0")],
            false,
        );
        raw(b, b"demo-1.0/sparse", b'0', b"", b"");
    });
    assert_eq!(
        err(&s).upload_message(),
        tar_not_accepted("Sparse members are not allowed")
    );
}

#[test]
fn rejects_oversized_extension_headers() {
    let limits = ArchiveLimits {
        max_tar_extension_bytes: 64,
        ..ArchiveLimits::default()
    };
    let long = "p".repeat(200);
    let s = sdist(|b| pax(b, &[("comment", &long)], false));
    let e = inspect_sdist(&s[..], FILENAME, &[], &limits).unwrap_err();
    assert_eq!(
        e.upload_message(),
        tar_not_accepted("Extended header larger than 64 bytes")
    );
}

#[test]
fn rejects_pax_size_disagreeing_with_header() {
    let s = sdist(|b| {
        pax(b, &[("size", "3")], false);
        raw(b, b"demo-1.0/x", b'0', b"", b"12345");
    });
    assert_eq!(
        err(&s).upload_message(),
        tar_not_accepted("pax size does not match the header size")
    );
}

#[test]
fn rejects_absolute_and_escaping_member_paths() {
    let s = sdist(|b| raw(b, b"/etc/passwd", b'0', b"", b"x"));
    assert_eq!(
        err(&s).upload_message(),
        tar_not_accepted("Absolute path in member name '/etc/passwd'")
    );
    let s = sdist(|b| raw(b, b"demo-1.0/../../evil", b'0', b"", b"x"));
    assert_eq!(
        err(&s).upload_message(),
        tar_not_accepted("Member name 'demo-1.0/../../evil' points outside the archive")
    );
    // Escaping into a sibling of the top-level directory is a second top level.
    let s = sdist(|b| raw(b, b"demo-1.0/../evil", b'0', b"", b"x"));
    assert!(matches!(err(&s), ArchiveError::TopLevelDirectories));
    // Control characters are escaped in messages.
    let s = sdist(|b| raw(b, b"/x\ny", b'0', b"", b"x"));
    assert_eq!(
        err(&s).upload_message(),
        tar_not_accepted("Absolute path in member name '/x\\ny'")
    );
}

#[test]
fn relative_symlinks_inside_the_root_are_fine() {
    // docutils ships links such as docs/api -> ../docutils/api
    let s = sdist(|b| {
        file(b, "demo-1.0/README.txt", b"r");
        raw(b, b"demo-1.0/docs/readme", b'2', b"../README.txt", b"");
        raw(b, b"demo-1.0/docs/sub/deep", b'2', b"../../README.txt", b"");
        raw(b, b"demo-1.0/self", b'2', b".", b"");
        raw(b, b"demo-1.0/hard", b'1', b"demo-1.0/README.txt", b"");
    });
    assert!(inspect(&s).is_ok(), "{:?}", inspect(&s));
}

#[test]
fn links_leaving_the_sdist_are_rejected() {
    for (name, kind, target, reason) in [
        (
            &b"demo-1.0/l"[..],
            b'2',
            &b"../../etc/passwd"[..],
            "Symlink 'demo-1.0/l' points outside the sdist",
        ),
        (
            b"demo-1.0/l",
            b'2',
            b"../other-1.0/x",
            "Symlink 'demo-1.0/l' points outside the sdist",
        ),
        (
            b"demo-1.0/l",
            b'2',
            b"..",
            "Symlink 'demo-1.0/l' points outside the sdist",
        ),
        (
            b"demo-1.0/l",
            b'2',
            b"/etc/passwd",
            "Symlink 'demo-1.0/l' has an absolute target",
        ),
        (
            b"demo-1.0/h",
            b'1',
            b"../etc/passwd",
            "Hard link 'demo-1.0/h' points outside the sdist",
        ),
        (
            b"demo-1.0/h",
            b'1',
            b"other/x",
            "Hard link 'demo-1.0/h' points outside the sdist",
        ),
    ] {
        let s = sdist(|b| raw(b, name, kind, target, b""));
        assert_eq!(err(&s).upload_message(), tar_not_accepted(reason));
    }
}

#[test]
fn rejects_devices_and_fifos() {
    for t in [b'3', b'4', b'6'] {
        let s = sdist(|b| raw(b, b"demo-1.0/dev", t, b"", b""));
        assert_eq!(
            err(&s).upload_message(),
            tar_not_accepted("Member 'demo-1.0/dev' is a device or FIFO")
        );
    }
}

#[test]
fn rejects_tar_zip_polyglot() {
    let mut s = sdist(|_| {});
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("x", zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"zip payload").unwrap();
    s.extend_from_slice(&w.finish().unwrap().into_inner());
    let e = err(&s);
    assert_eq!(
        e.upload_message(),
        "Invalid distribution file. File is both a ZIP and a tar archive"
    );
    // A stray EOCD signature without a central directory is not a zip.
    let mut s = sdist(|_| {});
    s.extend_from_slice(b"PK\x05\x06");
    s.extend_from_slice(&[0xAB; 18]);
    assert!(inspect(&s).is_ok());
}

#[derive(Debug)]
struct FailAfter {
    data: Vec<u8>,
    pos: usize,
    fail_at: usize,
}

impl Read for FailAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.fail_at {
            return Err(std::io::Error::other("connection reset"));
        }
        let n = buf
            .len()
            .min(self.fail_at - self.pos)
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn reader_failures_are_io_errors() {
    let data = sdist(|b| file(b, "demo-1.0/x", &[7u8; 100_000]));
    for fail_at in [0, 10, data.len() / 2] {
        let r = FailAfter {
            data: data.clone(),
            pos: 0,
            fail_at,
        };
        let e = inspect_sdist(r, FILENAME, &[], &ArchiveLimits::default()).unwrap_err();
        assert!(e.is_io(), "fail_at {fail_at}: {e:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = inspect(&bytes);
    }

    #[test]
    fn never_panics_on_arbitrary_tar_inside_gzip(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = inspect(&gz(&bytes));
    }

    #[test]
    fn never_panics_on_mutated_tars(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut t = tar_bytes(|b| {
            pax(b, &[("path", "demo-1.0/p")], false);
            raw(b, b"demo-1.0/q", b'0', b"", b"data");
            raw(b, b"demo-1.0/l", b'2', b"q", b"");
        });
        for (i, b) in edits {
            let at = i.index(t.len());
            t[at] = b;
        }
        if do_cut {
            t.truncate(cut.index(t.len()));
        }
        let _ = inspect_sdist(&gz(&t)[..], FILENAME, &["LICENSE".to_owned()], &ArchiveLimits::default());
    }
}

#[test]
fn symlink_chains_cannot_escape() {
    // demo-1.0/d -> "." makes demo-1.0/d/l live in demo-1.0, so "../z" from
    // there would leave the sdist although it looks inside lexically.
    let s = sdist(|b| {
        raw(b, b"demo-1.0/d", b'2', b".", b"");
        raw(b, b"demo-1.0/d/l", b'2', b"../z", b"");
    });
    assert_eq!(
        err(&s).upload_message(),
        tar_not_accepted("Member 'demo-1.0/d/l' is placed through a symlink")
    );
    // Same with the directory seen first and the symlink afterwards.
    let s = sdist(|b| {
        file(b, "demo-1.0/d/x", b"x");
        raw(b, b"demo-1.0/d", b'2', b"..", b"");
    });
    assert!(matches!(err(&s), ArchiveError::TarNotAccepted(_)));
    // A target that climbs after descending (through a possible symlink).
    let s = sdist(|b| {
        raw(b, b"demo-1.0/d", b'2', b".", b"");
        raw(b, b"demo-1.0/l", b'2', b"d/../z", b"");
    });
    assert_eq!(
        err(&s).upload_message(),
        tar_not_accepted("Symlink 'demo-1.0/l' has a target with '..' after a directory name")
    );
    // A hard link through a symlinked directory.
    let s = sdist(|b| {
        raw(b, b"demo-1.0/d", b'2', b"sub", b"");
        raw(b, b"demo-1.0/h", b'1', b"demo-1.0/d/x", b"");
    });
    assert!(matches!(err(&s), ArchiveError::TarNotAccepted(_)));
}

#[test]
fn backslash_traversal_is_rejected() {
    let s = sdist(|b| raw(b, b"demo-1.0\\..\\..\\evil", b'0', b"", b"x"));
    assert!(matches!(err(&s), ArchiveError::TarNotAccepted(_)));
    // Backslashes that stay inside are just odd names.
    assert!(inspect(&sdist(|b| raw(b, b"demo-1.0/a\\b", b'0', b"", b"x"))).is_ok());
}
