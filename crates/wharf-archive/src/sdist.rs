//! Source distribution (`.tar.gz`) validation and inspection (spec a.5).

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Read};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use crate::detect::{looks_like_tar, tail_is_zip, tar_nti};
use crate::error::{ArchiveError, ArchiveLimits, exceeds_ratio};
use crate::track::{IoState, IoTrack, TailKeeper, display_name};
use crate::zipframe::is_absolute;

/// What a valid sdist yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdistInspection {
    /// Raw bytes of `<top>/PKG-INFO`.
    pub pkg_info: Vec<u8>,
    /// The single top-level directory.
    pub top_dir: String,
}

/// Bytes of the raw file kept to look for a zip end-of-central-directory
/// record (zip/tar polyglots): the 64 KiB comment window plus room for the
/// central directory itself.
const TAIL_KEEP: usize = 1024 * 1024 + 64 * 1024 + 22;

/// Validate a gzip'd tar sdist and return its PKG-INFO, streaming the input once.
///
/// Checks (first failure wins):
///
/// * the file starts like a tar (`File is not a tarfile`) and is gzip'd; a plain
///   tar, a corrupt or truncated gzip/tar stream, or a bad header after the
///   first gives the bare `Invalid distribution file.`;
/// * bounded work: at most `limits.max_members` members, at most
///   `limits.max_sdist_uncompressed` uncompressed bytes, and — once past
///   `limits.compression_ratio_min_size` — a running uncompressed/compressed
///   ratio of at most `limits.max_compression_ratio`; extension headers (pax,
///   GNU long names) of at most `limits.max_tar_extension_bytes`;
/// * member policy (`tar archive not accepted: <reason>. See …`): no sparse
///   members, no absolute member paths, no member outside the archive root, no
///   symlink/hardlink leaving the sdist's top-level directory (relative `../`
///   targets that stay inside it are fine), no device or FIFO members, and a
///   pax `size` equal to the header size;
/// * not also a zip (`File is both a ZIP and a tar archive`);
/// * exactly one top-level directory (`Incorrect number of top-level directories in sdist`);
/// * `<top>/PKG-INFO` exists (`PKG-INFO not found at <top>/PKG-INFO`) and is a
///   regular file of at most `limits.max_metadata_bytes`;
/// * every `License-File` exists at `<top>/<path>` (standalone message).
pub fn inspect_sdist<R: Read>(
    reader: R,
    filename: &str,
    license_files: &[String],
    limits: &ArchiveLimits,
) -> Result<SdistInspection, ArchiveError> {
    let (tracked, io_state) = IoTrack::new(reader);
    let mut raw = BufReader::with_capacity(64 * 1024, TailKeeper::new(tracked, TAIL_KEEP));

    // Sniff the first block.
    let mut head = Vec::with_capacity(512);
    (&mut raw)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| io_or(&io_state, e, ArchiveError::NotATar))?;
    if !head.starts_with(&[0x1f, 0x8b]) {
        return Err(if looks_like_tar(&head) {
            // A tar, but not gzip'd: Python's `tarfile.open(mode="r:gz")` fails.
            ArchiveError::CorruptTar
        } else {
            ArchiveError::NotATar
        });
    }

    let trip: Rc<Cell<Option<Trip>>> = Rc::new(Cell::new(None));
    let meter = Meter {
        inner: MultiGzDecoder::new(io::Cursor::new(head).chain(raw)),
        out: 0,
        compressed: io_state.clone(),
        limits: limits.clone(),
        trip: Rc::clone(&trip),
    };
    let mut archive = tar::Archive::new(meter);
    let mut walk = Walk::new(limits);
    {
        let classify = |e: io::Error, first: bool| -> ArchiveError {
            if let Some(t) = trip.get() {
                return t.into_error(limits);
            }
            if let Some(ioe) = io_state.take_error() {
                return ArchiveError::Io(ioe);
            }
            drop(e);
            if first {
                ArchiveError::NotATar
            } else {
                ArchiveError::CorruptTar
            }
        };
        let entries = archive.entries().map_err(|e| classify(e, true))?.raw(true);
        for entry in entries {
            let first = walk.headers == 0;
            let mut entry = entry.map_err(|e| classify(e, first))?;
            walk.entry(&mut entry).map_err(|f| match f {
                Fail::Archive(e) => e,
                Fail::Read(e) => classify(e, false),
            })?;
        }
    }
    let meter = archive.into_inner();
    let uncompressed = meter.out;
    if walk.headers == 0 && uncompressed < 512 {
        // Python: "empty file" → not a tarfile.
        return Err(ArchiveError::NotATar);
    }
    if walk.pending_extension() {
        return Err(ArchiveError::CorruptTar);
    }
    // Read the rest of the raw file (not of the gzip stream) for the tail check.
    let (_, raw) = meter.inner.into_inner().into_inner();
    let mut tail = raw.into_inner();
    io::copy(&mut tail, &mut io::sink())
        .map_err(|e| io_or(&io_state, e, ArchiveError::CorruptTar))?;
    let (tail_bytes, tail_start) = tail.tail();
    if tail_is_zip(tail_bytes, tail_start) {
        return Err(ArchiveError::ZipTarPolyglot);
    }

    let top = match walk.top.take() {
        Some(t) if !t.is_empty() => t,
        _ => return Err(ArchiveError::TopLevelDirectories),
    };
    let pkg_info_path = format!("{top}/PKG-INFO");
    let pkg_info = match walk.pkg_info.take() {
        Some(PkgInfo::Regular(bytes)) => bytes,
        Some(PkgInfo::NotRegular) => {
            return Err(ArchiveError::TarNotAccepted(
                "PKG-INFO is not a regular file".to_owned(),
            ));
        }
        None => return Err(ArchiveError::PkgInfoNotFound(pkg_info_path)),
    };
    for license_file in license_files {
        let expected = format!("{top}/{license_file}");
        let found = normalize(&expected)
            .ok()
            .is_some_and(|c| walk.paths.contains(&c.join("/")));
        if !found {
            return Err(ArchiveError::LicenseFileMissing {
                license_file: license_file.clone(),
                filename: filename.to_owned(),
                expected,
            });
        }
    }
    Ok(SdistInspection {
        pkg_info,
        top_dir: top,
    })
}

fn io_or(io_state: &IoState, _e: io::Error, otherwise: ArchiveError) -> ArchiveError {
    match io_state.take_error() {
        Some(e) => ArchiveError::Io(e),
        None => otherwise,
    }
}

#[derive(Debug, Clone, Copy)]
enum Trip {
    Ratio,
    TooLarge,
}

impl Trip {
    fn into_error(self, limits: &ArchiveLimits) -> ArchiveError {
        match self {
            Trip::Ratio => ArchiveError::CompressionRatio(limits.max_compression_ratio),
            Trip::TooLarge => ArchiveError::UncompressedTooLarge(limits.max_sdist_uncompressed),
        }
    }
}

/// Counts decompressed bytes and enforces the size and ratio caps.
struct Meter<R> {
    inner: R,
    out: u64,
    compressed: IoState,
    limits: ArchiveLimits,
    trip: Rc<Cell<Option<Trip>>>,
}

impl<R: Read> Read for Meter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.trip.get().is_some() {
            return Err(io::Error::other("archive limit exceeded"));
        }
        let n = self.inner.read(buf)?;
        self.out = self.out.saturating_add(n as u64);
        let tripped = if self.out > self.limits.max_sdist_uncompressed {
            Some(Trip::TooLarge)
        } else if self.out > self.limits.compression_ratio_min_size
            && exceeds_ratio(
                self.out,
                self.compressed.bytes_read(),
                self.limits.max_compression_ratio,
            )
        {
            Some(Trip::Ratio)
        } else {
            None
        };
        if let Some(t) = tripped {
            self.trip.set(Some(t));
            return Err(io::Error::other("archive limit exceeded"));
        }
        Ok(n)
    }
}

enum Fail {
    Archive(ArchiveError),
    Read(io::Error),
}

impl From<ArchiveError> for Fail {
    fn from(e: ArchiveError) -> Self {
        Fail::Archive(e)
    }
}

enum PkgInfo {
    Regular(Vec<u8>),
    NotRegular,
}

/// Streaming state over the raw tar headers.
struct Walk<'l> {
    limits: &'l ArchiveLimits,
    headers: u64,
    top: Option<String>,
    pkg_info: Option<PkgInfo>,
    paths: HashSet<String>,
    /// Normalised paths of symlink members.
    symlinks: HashSet<String>,
    /// Every proper ancestor directory of a member path.
    parents: HashSet<String>,
    global_pax: HashMap<String, Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<HashMap<String, Vec<u8>>>,
}

fn not_accepted(reason: String) -> ArchiveError {
    ArchiveError::TarNotAccepted(reason)
}

/// Python's `nts`: bytes up to the first NUL.
fn nts(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// Lexically normalise a member path into components: empty and `.` dropped,
/// `..` pops. `Err(())` if it climbs above the archive root.
fn normalize(path: &str) -> Result<Vec<String>, ()> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop().ok_or(())?;
            }
            c => out.push(c.to_owned()),
        }
    }
    Ok(out)
}

/// Parse a pax extended header body (`"<len> <key>=<value>\n"` records).
fn parse_pax(data: &[u8]) -> Option<HashMap<String, Vec<u8>>> {
    let mut map = HashMap::new();
    let mut pos = 0usize;
    while pos < data.len() {
        if data[pos] == 0 {
            break;
        }
        let rest = &data[pos..];
        let sp = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len < 5 || len > rest.len() || sp + 1 >= len {
            return None;
        }
        let record = &rest[sp + 1..len];
        let (&last, body) = record.split_last()?;
        if last != b'\n' {
            return None;
        }
        let eq = body.iter().position(|&b| b == b'=')?;
        if eq == 0 {
            return None;
        }
        let key = std::str::from_utf8(&body[..eq]).ok()?.to_owned();
        map.insert(key, body[eq + 1..].to_vec());
        pos += len;
    }
    Some(map)
}

impl<'l> Walk<'l> {
    fn new(limits: &'l ArchiveLimits) -> Self {
        Self {
            limits,
            headers: 0,
            top: None,
            pkg_info: None,
            paths: HashSet::new(),
            symlinks: HashSet::new(),
            parents: HashSet::new(),
            global_pax: HashMap::new(),
            long_name: None,
            long_link: None,
            pax: None,
        }
    }

    fn pending_extension(&self) -> bool {
        self.long_name.is_some() || self.long_link.is_some() || self.pax.is_some()
    }

    fn read_extension<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Vec<u8>, Fail> {
        let cap = self.limits.max_tar_extension_bytes;
        let too_big = || {
            Fail::Archive(not_accepted(format!(
                "Extended header larger than {cap} bytes"
            )))
        };
        if entry.size() > cap {
            return Err(too_big());
        }
        let mut buf = Vec::new();
        entry
            .take(cap.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(Fail::Read)?;
        if buf.len() as u64 > cap {
            return Err(too_big());
        }
        Ok(buf)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Fail> {
        self.headers += 1;
        if self.headers > self.limits.max_members {
            return Err(ArchiveError::TooManyMembers(self.limits.max_members).into());
        }
        let header: [u8; 512] = *entry.header().as_bytes();
        // The tar crate frames by this size; Python must agree on it.
        match tar_nti(&header[124..136]) {
            Some(n) if i128::from(entry.size()) == n => {}
            _ => return Err(ArchiveError::CorruptTar.into()),
        }
        let typeflag = header[156];
        match typeflag {
            b'L' | b'K' => {
                let data = self.read_extension(entry)?;
                let value = nts(&data).to_vec();
                let slot = if typeflag == b'L' {
                    &mut self.long_name
                } else {
                    &mut self.long_link
                };
                if slot.replace(value).is_some() {
                    return Err(ArchiveError::CorruptTar.into());
                }
                return Ok(());
            }
            b'x' | b'X' => {
                let data = self.read_extension(entry)?;
                let map = parse_pax(&data).ok_or(ArchiveError::CorruptTar)?;
                if self.pax.replace(map).is_some() {
                    return Err(ArchiveError::CorruptTar.into());
                }
                return Ok(());
            }
            b'g' => {
                let data = self.read_extension(entry)?;
                let map = parse_pax(&data).ok_or(ArchiveError::CorruptTar)?;
                self.global_pax.extend(map);
                return Ok(());
            }
            b'S' => {
                return Err(not_accepted("Sparse members are not allowed".to_owned()).into());
            }
            _ => {}
        }

        // A member: apply the pending extension headers.
        let local_pax = self.pax.take().unwrap_or_default();
        let long_name = self.long_name.take();
        let long_link = self.long_link.take();
        let pax_get = |k: &str| local_pax.get(k).or_else(|| self.global_pax.get(k));
        if local_pax
            .keys()
            .chain(self.global_pax.keys())
            .any(|k| k.starts_with("GNU.sparse."))
        {
            return Err(not_accepted("Sparse members are not allowed".to_owned()).into());
        }
        if let Some(size) = pax_get("size") {
            let ok = std::str::from_utf8(size)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| s == entry.size());
            if !ok {
                return Err(
                    not_accepted("pax size does not match the header size".to_owned()).into(),
                );
            }
        }
        let name_bytes: Vec<u8> = if let Some(p) = pax_get("path") {
            p.clone()
        } else if let Some(l) = long_name {
            l
        } else {
            let name = nts(&header[0..100]);
            let prefix = nts(&header[345..500]);
            if prefix.is_empty() {
                name.to_vec()
            } else {
                [prefix, b"/", name].concat()
            }
        };
        let link_bytes: Vec<u8> = if let Some(p) = pax_get("linkpath") {
            p.clone()
        } else if let Some(l) = long_link {
            l
        } else {
            nts(&header[157..257]).to_vec()
        };
        let name = String::from_utf8_lossy(&name_bytes).into_owned();
        let shown = display_name(&name);

        if is_absolute(&name) {
            return Err(not_accepted(format!("Absolute path in member name '{shown}'")).into());
        }
        let outside = || not_accepted(format!("Member name '{shown}' points outside the archive"));
        let components = normalize(&name).map_err(|()| outside())?;
        // Where `\` is a separator (Windows installers) the name must not escape either.
        if name.contains('\\') && normalize(&name.replace('\\', "/")).is_err() {
            return Err(outside().into());
        }
        let member_top = components.first().cloned().unwrap_or_default();
        match &self.top {
            None => self.top = Some(member_top.clone()),
            Some(t) if *t == member_top => {}
            Some(_) => return Err(ArchiveError::TopLevelDirectories.into()),
        }
        if member_top.is_empty() {
            return Err(ArchiveError::TopLevelDirectories.into());
        }

        match typeflag {
            b'1' | b'2' => {
                let target = String::from_utf8_lossy(&link_bytes).into_owned();
                let kind = if typeflag == b'2' {
                    "Symlink"
                } else {
                    "Hard link"
                };
                if is_absolute(&target) {
                    return Err(
                        not_accepted(format!("{kind} '{shown}' has an absolute target")).into(),
                    );
                }
                // Symlinks resolve from the link's directory, hard links from
                // the archive root.
                let base = if typeflag == b'2' {
                    components[..components.len() - 1].join("/")
                } else {
                    String::new()
                };
                let resolved = normalize(&format!("{base}/{target}"));
                let inside = resolved
                    .as_ref()
                    .is_ok_and(|c| c.first() == Some(&member_top));
                if !inside {
                    return Err(
                        not_accepted(format!("{kind} '{shown}' points outside the sdist")).into(),
                    );
                }
                if typeflag == b'2' {
                    // Only `../`* followed by plain names: a `..` after a name
                    // could climb out of a directory reached through another
                    // symlink, which lexical resolution cannot see.
                    let mut seen_name = false;
                    for c in target.split('/').filter(|c| !c.is_empty() && *c != ".") {
                        if c == ".." && seen_name {
                            return Err(not_accepted(format!(
                                "Symlink '{shown}' has a target with '..' after a directory name"
                            ))
                            .into());
                        }
                        seen_name |= c != "..";
                    }
                    let path = components.join("/");
                    if self.parents.contains(&path) {
                        return Err(self.through_symlink(&shown));
                    }
                    self.symlinks.insert(path);
                } else if let Ok(c) = &resolved {
                    self.check_ancestors(c, &shown)?;
                }
            }
            b'3' | b'4' | b'6' => {
                return Err(not_accepted(format!("Member '{shown}' is a device or FIFO")).into());
            }
            _ => {}
        }

        if components.len() == 2 && components[1] == "PKG-INFO" {
            let regular = matches!(typeflag, b'0' | 0 | b'7');
            if regular {
                let cap = self.limits.max_metadata_bytes;
                let too_large = || {
                    Fail::Archive(ArchiveError::MemberTooLarge {
                        path: format!("{member_top}/PKG-INFO"),
                        limit: cap,
                    })
                };
                if entry.size() > cap {
                    return Err(too_large());
                }
                let mut buf = Vec::new();
                entry
                    .take(cap.saturating_add(1))
                    .read_to_end(&mut buf)
                    .map_err(Fail::Read)?;
                if buf.len() as u64 > cap {
                    return Err(too_large());
                }
                if (buf.len() as u64) < entry.size() {
                    return Err(ArchiveError::CorruptTar.into());
                }
                self.pkg_info = Some(PkgInfo::Regular(buf));
            } else {
                self.pkg_info = Some(PkgInfo::NotRegular);
            }
        }
        self.check_ancestors(&components, &shown)?;
        for i in 1..components.len() {
            self.parents.insert(components[..i].join("/"));
        }
        self.paths.insert(components.join("/"));
        Ok(())
    }

    /// No member may sit beneath a symlink (extraction would follow the link).
    fn check_ancestors(&self, components: &[String], shown: &str) -> Result<(), Fail> {
        for i in 1..components.len() {
            if self.symlinks.contains(&components[..i].join("/")) {
                return Err(self.through_symlink(shown));
            }
        }
        Ok(())
    }

    fn through_symlink(&self, shown: &str) -> Fail {
        Fail::Archive(not_accepted(format!(
            "Member '{shown}' is placed through a symlink"
        )))
    }
}
