//! Wheel (`.whl`) validation and inspection (spec a.5).

use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom};

use crate::detect::{is_tarfile, is_zipfile};
use crate::entry_points::entry_points_valid;
use crate::error::{ArchiveError, ArchiveLimits, exceeds_ratio};
use crate::track::{IoState, IoTrack};
use crate::zipframe::{self, CdError, Reject};

/// What a valid wheel yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelInspection {
    /// Raw bytes of `<name>-<version>.dist-info/METADATA` (served as the PEP 658
    /// `<file>.metadata`).
    pub metadata: Vec<u8>,
    /// `<name>-<version>.dist-info`, with name and version exactly as in the filename.
    pub dist_info_dir: String,
}

/// Split a wheel filename on its first two `-` into `(name, version)`, the way
/// PyPI locates the `.dist-info` directory (`filename.split("-", 2)`).
pub fn wheel_name_version(filename: &str) -> Result<(&str, &str), ArchiveError> {
    let mut parts = filename.splitn(3, '-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(version), Some(_)) => Ok((name, version)),
        _ => Err(ArchiveError::WheelFilename),
    }
}

/// Validate a wheel and return its METADATA.
///
/// Checks, first failure wins (the order of PyPI's `_is_valid_dist_file`, then
/// the wheel checks of spec a.5 items 6–9):
///
/// 1. it is a zip (`File is not a zipfile`), and not also a tar
///    (`File is both a ZIP and a tar archive`); the central directory parses
///    (otherwise the bare `Invalid distribution file.`); at most
///    `limits.max_members` entries;
/// 2. compression ratio (`File exceeds compression ratio of 50`);
/// 3. members are STORED or DEFLATED only;
/// 4. `filename` has two `-` (`Unable to parse name and version from wheel filename`)
///    and `<name>-<version>.dist-info/WHEEL` exists and reads cleanly;
/// 5. record framing (`ZIP archive not accepted: <reason>. See …`): duplicate
///    names, local/central mismatches, data descriptors, trailing data, unknown
///    records, absolute or `..` member paths …;
/// 6. each `License-File` exists at `<dist-info>/licenses/<path>`;
/// 7. `<dist-info>/RECORD` exists;
/// 8. `<dist-info>/entry_points.txt`, if present, is valid as PyPI reads it
///    ([`crate::entry_points_valid`]);
/// 9. `<dist-info>/METADATA` exists; it is read with a cap of
///    `limits.max_metadata_bytes` uncompressed bytes;
/// 10. (Wharf's own, PyPI has no such check) there is exactly one top-level
///     `*.dist-info` directory.
///
/// `filename` is the uploaded file's name (no directory part).
pub fn inspect_wheel<R: Read + Seek>(
    reader: R,
    filename: &str,
    license_files: &[String],
    limits: &ArchiveLimits,
) -> Result<WheelInspection, ArchiveError> {
    let (mut r, io_state) = IoTrack::new(reader);
    let io_fail = |e: io::Error| classify_io(&io_state, e);

    let file_len = r.seek(SeekFrom::End(0)).map_err(io_fail)?;
    let eocd = is_zipfile(&mut r, file_len)
        .map_err(io_fail)?
        .ok_or(ArchiveError::NotAZip)?;
    if is_tarfile(&mut r).map_err(io_fail)? {
        return Err(ArchiveError::ZipTarPolyglot);
    }
    if eocd.entries > limits.max_members {
        return Err(ArchiveError::TooManyMembers(limits.max_members));
    }
    let cd =
        zipframe::read_central_directory(&mut r, &eocd, limits.max_members).map_err(
            |e| match e {
                CdError::Bad => ArchiveError::BadZip,
                CdError::TooMany => ArchiveError::TooManyMembers(limits.max_members),
                CdError::Io(e) => io_fail(e),
            },
        )?;

    // Decompression-bomb rule over the declared sizes.
    let uncompressed = cd
        .iter()
        .fold(0u64, |acc, e| acc.saturating_add(e.uncompressed));
    if uncompressed > limits.compression_ratio_min_size
        && exceeds_ratio(uncompressed, file_len, limits.max_compression_ratio)
    {
        return Err(ArchiveError::CompressionRatio(limits.max_compression_ratio));
    }
    if cd.iter().any(|e| e.method != 0 && e.method != 8) {
        return Err(ArchiveError::UnsupportedCompression);
    }

    let (name, version) = wheel_name_version(filename)?;
    let dist_info_dir = format!("{name}-{version}.dist-info");
    let wheel_path = format!("{dist_info_dir}/WHEEL");
    {
        let mut archive = open_zip(&mut r, &io_state)?;
        if read_member(&mut archive, &wheel_path, limits, &io_state)?.is_none() {
            return Err(ArchiveError::WheelNotFound(wheel_path));
        }
    }

    zipframe::validate_framing(&mut r, file_len, &cd).map_err(|e| match e {
        Reject::Reason(reason) => ArchiveError::ZipNotAccepted(reason),
        Reject::Io(e) => io_fail(e),
    })?;

    // ---- spec a.4 step 22: wheel contents ----
    let names: HashSet<&str> = cd.iter().filter_map(|e| e.name.as_deref()).collect();
    for license_file in license_files {
        let expected = format!("{dist_info_dir}/licenses/{license_file}");
        if !names.contains(expected.as_str()) {
            return Err(ArchiveError::LicenseFileMissing {
                license_file: license_file.clone(),
                filename: filename.to_owned(),
                expected,
            });
        }
    }
    let record_path = format!("{dist_info_dir}/RECORD");
    if !names.contains(record_path.as_str()) {
        return Err(ArchiveError::RecordMissing {
            filename: filename.to_owned(),
            path: record_path,
        });
    }
    let mut archive = open_zip(&mut r, &io_state)?;
    let entry_points_path = format!("{dist_info_dir}/entry_points.txt");
    if names.contains(entry_points_path.as_str()) {
        let bad = || ArchiveError::InvalidEntryPoints {
            filename: filename.to_owned(),
        };
        let bytes =
            read_member(&mut archive, &entry_points_path, limits, &io_state)?.ok_or_else(bad)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
        if !entry_points_valid(text) {
            return Err(bad());
        }
    }
    let metadata_path = format!("{dist_info_dir}/METADATA");
    let metadata =
        read_member(&mut archive, &metadata_path, limits, &io_state)?.ok_or_else(|| {
            ArchiveError::MetadataMissing {
                filename: filename.to_owned(),
                path: metadata_path.clone(),
            }
        })?;
    // ---- Wharf's own rule, after all of PyPI's ----
    let dist_info_dirs = top_level_dist_info_dirs(&cd);
    if dist_info_dirs.len() > 1 {
        return Err(ArchiveError::SeveralDistInfoDirs {
            filename: filename.to_owned(),
            dirs: dist_info_dirs.join(", "),
        });
    }
    Ok(WheelInspection {
        metadata,
        dist_info_dir,
    })
}

/// The distinct top-level `*.dist-info` names, sorted: the first path component of each
/// member, as pip and uv find a wheel's `.dist-info` directory (they refuse to install a
/// wheel with more than one).
fn top_level_dist_info_dirs(cd: &[zipframe::CdEntry]) -> Vec<String> {
    let dirs: std::collections::BTreeSet<String> = cd
        .iter()
        .map(|entry| {
            let raw = entry.raw_name.as_slice();
            raw.split(|&byte| byte == b'/').next().unwrap_or(raw)
        })
        .filter(|top| top.ends_with(b".dist-info"))
        .map(|top| String::from_utf8_lossy(top).into_owned())
        .collect();
    dirs.into_iter().collect()
}

/// An error that surfaced from reading: the caller's I/O failure if the
/// tracker saw one, otherwise corrupt zip data.
fn classify_io(io_state: &IoState, e: io::Error) -> ArchiveError {
    match io_state.take_error() {
        Some(_) => ArchiveError::Io(e),
        None => ArchiveError::BadZip,
    }
}

fn classify_zip(io_state: &IoState, e: zip::result::ZipError) -> ArchiveError {
    match e {
        zip::result::ZipError::Io(e) => classify_io(io_state, e),
        _ => match io_state.take_error() {
            Some(e) => ArchiveError::Io(e),
            None => ArchiveError::BadZip,
        },
    }
}

fn open_zip<R: Read + Seek>(r: R, io_state: &IoState) -> Result<zip::ZipArchive<R>, ArchiveError> {
    zip::ZipArchive::new(r).map_err(|e| classify_zip(io_state, e))
}

/// Read one member fully, refusing more than `limits.max_metadata_bytes`
/// uncompressed bytes (declared or actual). `Ok(None)` if absent.
fn read_member<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    path: &str,
    limits: &ArchiveLimits,
    io_state: &IoState,
) -> Result<Option<Vec<u8>>, ArchiveError> {
    let cap = limits.max_metadata_bytes;
    let too_large = || ArchiveError::MemberTooLarge {
        path: path.to_owned(),
        limit: cap,
    };
    let mut file = match archive.by_name(path) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(classify_zip(io_state, e)),
    };
    if file.size() > cap {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(usize::try_from(file.size().min(cap)).unwrap_or(0));
    (&mut file)
        .take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| classify_io(io_state, e))?;
    if buf.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(Some(buf))
}
