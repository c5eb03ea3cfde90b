//! Zip central-directory parsing and record-framing validation.
//!
//! The framing walk follows PyPI's `warehouse.utils.zipfiles.validate_zipfile`
//! (documented at <https://docs.pypi.org/archives>): it streams every record
//! from the first byte to the end and rejects archives that a local-header
//! streaming parser and a central-directory parser would read differently.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

use crate::detect::{
    CENTRAL_SIG, EOCD_SIG, EOCD64_LOCATOR_SIG, EOCD64_SIG, Eocd, LOCAL_SIG, u16_at, u32_at, u64_at,
};

/// One central-directory entry.
#[derive(Debug, Clone)]
pub(crate) struct CdEntry {
    /// Raw name bytes.
    pub(crate) raw_name: Vec<u8>,
    /// The name as Python's `zipfile` decodes it, when it can be compared with
    /// a UTF-8 name (UTF-8 flag set, or pure ASCII). `None` for cp437 names
    /// with non-ASCII bytes.
    pub(crate) name: Option<String>,
    pub(crate) method: u16,
    pub(crate) crc: u32,
    pub(crate) compressed: u64,
    pub(crate) uncompressed: u64,
    /// Absolute offset of the local header (prepended data accounted for).
    pub(crate) local_offset: u64,
}

/// Failure of the central-directory parse.
#[derive(Debug)]
pub(crate) enum CdError {
    /// Python's `zipfile.ZipFile` would raise `BadZipFile`.
    Bad,
    /// More entries than allowed.
    TooMany,
    Io(io::Error),
}

impl From<io::Error> for CdError {
    fn from(e: io::Error) -> Self {
        CdError::Io(e)
    }
}

const ZIP64_EXTRA: u16 = 0x0001;
const UNICODE_PATH_EXTRA: u16 = 0x7075;

/// Read the central directory the way `zipfile.ZipFile` does (`_RealGetContents`).
pub(crate) fn read_central_directory<R: Read + Seek>(
    r: &mut R,
    eocd: &Eocd,
    max_entries: u64,
) -> Result<Vec<CdEntry>, CdError> {
    if eocd.multi_disk {
        return Err(CdError::Bad);
    }
    let start = eocd.cd_start().ok_or(CdError::Bad)?;
    let extra64 = if eocd.zip64 { 76 } else { 0 };
    // concat = location - size_cd - offset_cd (- 76 for zip64); may be negative.
    let concat =
        i128::from(eocd.location) - i128::from(eocd.cd_size) - i128::from(eocd.cd_offset) - extra64;
    r.seek(SeekFrom::Start(start))?;
    let mut br = BufReader::with_capacity(64 * 1024, r.by_ref().take(eocd.cd_size));
    let mut out = Vec::new();
    let mut total: u64 = 0;
    while total < eocd.cd_size {
        let mut hdr = [0u8; 46];
        if !crate::detect::read_full(&mut br, &mut hdr)? {
            return Err(CdError::Bad);
        }
        if hdr[..4] != CENTRAL_SIG {
            return Err(CdError::Bad);
        }
        if out.len() as u64 >= max_entries {
            return Err(CdError::TooMany);
        }
        let flags = u16_at(&hdr, 8);
        let method = u16_at(&hdr, 10);
        let crc = u32_at(&hdr, 16);
        let mut compressed = u64::from(u32_at(&hdr, 20));
        let mut uncompressed = u64::from(u32_at(&hdr, 24));
        let name_len = usize::from(u16_at(&hdr, 28));
        let extra_len = usize::from(u16_at(&hdr, 30));
        let comment_len = usize::from(u16_at(&hdr, 32));
        let mut header_offset = u64::from(u32_at(&hdr, 42));
        let mut raw_name = vec![0u8; name_len];
        let mut extra = vec![0u8; extra_len];
        let mut comment = vec![0u8; comment_len];
        if !crate::detect::read_full(&mut br, &mut raw_name)?
            || !crate::detect::read_full(&mut br, &mut extra)?
            || !crate::detect::read_full(&mut br, &mut comment)?
        {
            return Err(CdError::Bad);
        }
        // ZIP64 extended information: fields present only for maxed-out values.
        let mut ex = extra.as_slice();
        while ex.len() >= 4 {
            let id = u16_at(ex, 0);
            let size = usize::from(u16_at(ex, 2));
            let Some(data) = ex.get(4..4 + size) else {
                return Err(CdError::Bad);
            };
            if id == ZIP64_EXTRA {
                let mut fields = data.chunks_exact(8).map(|c| u64_at(c, 0));
                if uncompressed == 0xFFFF_FFFF {
                    uncompressed = fields.next().ok_or(CdError::Bad)?;
                }
                if compressed == 0xFFFF_FFFF {
                    compressed = fields.next().ok_or(CdError::Bad)?;
                }
                if header_offset == 0xFFFF_FFFF {
                    header_offset = fields.next().ok_or(CdError::Bad)?;
                }
            }
            ex = &ex[4 + size..];
        }
        let name = if flags & 0x800 != 0 {
            Some(String::from_utf8(raw_name.clone()).map_err(|_| CdError::Bad)?)
        } else if raw_name.is_ascii() {
            Some(String::from_utf8_lossy(&raw_name).into_owned())
        } else {
            None
        };
        let local_offset =
            u64::try_from(i128::from(header_offset) + concat).map_err(|_| CdError::Bad)?;
        total = total
            .saturating_add(46)
            .saturating_add((name_len + extra_len + comment_len) as u64);
        out.push(CdEntry {
            raw_name,
            name,
            method,
            crc,
            compressed,
            uncompressed,
            local_offset,
        });
    }
    Ok(out)
}

/// A buffered reader that knows its absolute position.
struct Walker<R> {
    inner: BufReader<R>,
    pos: u64,
}

impl<R: Read + Seek> Walker<R> {
    fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, Reject> {
        let mut v = vec![0u8; n];
        if !crate::detect::read_full(&mut self.inner, &mut v)? {
            return Err(Reject::msg("Malformed zip file"));
        }
        self.pos += n as u64;
        Ok(v)
    }

    fn skip(&mut self, n: u64) -> Result<(), Reject> {
        let step = i64::try_from(n).map_err(|_| Reject::msg("Malformed zip file"))?;
        self.inner.seek_relative(step)?;
        self.pos = self
            .pos
            .checked_add(n)
            .ok_or(Reject::msg("Malformed zip file"))?;
        Ok(())
    }

    fn at_eof(&mut self) -> io::Result<bool> {
        Ok(self.inner.fill_buf()?.is_empty())
    }
}

/// A framing rejection (reason text) or an I/O failure of the reader.
#[derive(Debug)]
pub(crate) enum Reject {
    Reason(String),
    Io(io::Error),
}

impl Reject {
    fn msg(s: &str) -> Self {
        Reject::Reason(s.to_owned())
    }
}

impl From<io::Error> for Reject {
    fn from(e: io::Error) -> Self {
        Reject::Io(e)
    }
}

fn unprintable(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b < 0x20 || b == 0x7F)
}

struct LocalRecord {
    name: Vec<u8>,
    method: u16,
    crc: u32,
}

/// Walk every record of the archive from offset 0 (see the module docs).
pub(crate) fn validate_framing<R: Read + Seek>(
    r: &mut R,
    file_len: u64,
    cd: &[CdEntry],
) -> Result<(), Reject> {
    // Python's dict {orig_filename: compress_size}: last entry wins.
    let mut sizes: HashMap<&str, u64> = HashMap::with_capacity(cd.len());
    for e in cd {
        if let Some(n) = &e.name {
            sizes.insert(n.as_str(), e.compressed);
        }
    }
    r.seek(SeekFrom::Start(0))?;
    let mut w = Walker {
        inner: BufReader::with_capacity(64 * 1024, r),
        pos: 0,
    };
    let mut local_names: HashSet<Vec<u8>> = HashSet::new();
    let mut cd_names: HashSet<Vec<u8>> = HashSet::new();
    let mut locals: HashMap<u64, LocalRecord> = HashMap::new();
    let mut expected_eocd64: Option<u64> = None;
    let mut actual_eocd64: Option<u64> = None;
    let mut cd_records: u64 = 0;
    let mut cd_offset: Option<u64> = None;
    let mut cd_size: u64 = 0;
    let mut eocd_vals: Option<(u64, u64, u64)> = None; // records, size, offset

    loop {
        let record_at = w.pos;
        let sig = w.read_exact(4)?;
        let sig = [sig[0], sig[1], sig[2], sig[3]];
        if sig == EOCD_SIG && expected_eocd64.is_some() && actual_eocd64.is_none() {
            return Err(Reject::msg("Malformed zip file"));
        }
        if sig == EOCD64_LOCATOR_SIG && (expected_eocd64.is_none() || actual_eocd64.is_some()) {
            return Err(Reject::msg("Malformed zip file"));
        }
        if sig != EOCD64_LOCATOR_SIG && sig != EOCD_SIG && expected_eocd64.is_some() {
            return Err(Reject::msg("Malformed zip file"));
        }
        if sig == CENTRAL_SIG {
            if cd_offset.is_none() {
                cd_offset = Some(record_at);
            }
            cd_records += 1;
            let hdr = w.read_exact(42)?;
            let name_len = usize::from(u16_at(&hdr, 24));
            let extra_len = usize::from(u16_at(&hdr, 26));
            let comment_len = u16_at(&hdr, 28);
            if comment_len != 0 {
                return Err(Reject::msg("Comment in central directory"));
            }
            let name = w.read_exact(name_len)?;
            let _extra = w.read_exact(extra_len)?;
            if unprintable(&name) {
                return Err(Reject::msg("Invalid character in filename"));
            }
            cd_size = cd_size.saturating_add((46 + name_len + extra_len) as u64);
            if cd_names.contains(&name) {
                return Err(Reject::msg("Duplicate filename in central directory"));
            }
            if !local_names.contains(&name) {
                return Err(Reject::msg("Missing filename in local headers"));
            }
            cd_names.insert(name);
        } else if sig == LOCAL_SIG {
            let rec = local_file_header(&mut w, &sizes)?;
            if local_names.contains(&rec.name) {
                return Err(Reject::msg("Duplicate filename in local headers"));
            }
            local_names.insert(rec.name.clone());
            locals.insert(record_at, rec);
        } else if sig == EOCD_SIG {
            if cd_offset.is_none() {
                cd_offset = Some(record_at);
            }
            let body = w.read_exact(18)?;
            let on_disk = u64::from(u16_at(&body, 4));
            let records = u64::from(u16_at(&body, 6));
            let size = u64::from(u32_at(&body, 8));
            let offset = u64::from(u32_at(&body, 12));
            let comment = u64::from(u16_at(&body, 16));
            if on_disk != records {
                return Err(Reject::msg("Malformed zip file"));
            }
            w.skip(comment)?;
            if !(actual_eocd64.is_some() && eocd_vals.is_some()) {
                eocd_vals = Some((records, size, offset));
            }
            let (records, size, offset) = eocd_vals.unwrap_or((records, size, offset));
            if records != cd_records {
                return Err(Reject::msg("Mismatched central directory records"));
            }
            if cd_offset != Some(offset) {
                return Err(Reject::msg("Mismatched central directory offset"));
            }
            if size != cd_size {
                return Err(Reject::msg("Mismatched central directory size"));
            }
            break;
        } else if sig == EOCD64_SIG {
            expected_eocd64 = Some(record_at);
            let body = w.read_exact(52)?;
            let rec_size = u64_at(&body, 0);
            let on_disk = u64_at(&body, 20);
            let records = u64_at(&body, 28);
            let size = u64_at(&body, 36);
            let offset = u64_at(&body, 44);
            if on_disk != records {
                return Err(Reject::msg("Malformed zip file"));
            }
            // Extensible data in the ZIP64 EOCD has no use in Python packaging.
            if rec_size != 44 {
                return Err(Reject::msg("Malformed zip file"));
            }
            eocd_vals = Some((records, size, offset));
        } else if sig == EOCD64_LOCATOR_SIG {
            let body = w.read_exact(16)?;
            let off = u64_at(&body, 4);
            actual_eocd64 = Some(off);
            if expected_eocd64 != Some(off) {
                return Err(Reject::msg("Mis-matched EOCD64 record and locator offset"));
            }
        } else {
            return Err(Reject::msg("Unknown record signature"));
        }
    }
    if cd_names != local_names {
        return Err(Reject::msg(
            "Mis-matched local headers and central directory",
        ));
    }
    if w.pos != file_len || !w.at_eof()? {
        return Err(Reject::msg("Trailing data"));
    }

    // Beyond PyPI's walk: every central-directory entry must point at the local
    // header of the same member, with the same method and CRC, so that a
    // central-directory reader and a streaming reader see identical content.
    for e in cd {
        match locals.get(&e.local_offset) {
            Some(l) if l.name == e.raw_name && l.method == e.method && l.crc == e.crc => {}
            _ => {
                return Err(Reject::msg(
                    "Central directory entry does not match its local header",
                ));
            }
        }
    }
    // And no member may be written outside the install target.
    for e in cd {
        let name = String::from_utf8_lossy(&e.raw_name);
        if is_absolute(&name) {
            return Err(Reject::msg("Absolute path in filename"));
        }
        if name.split(['/', '\\']).any(|c| c == "..") {
            return Err(Reject::msg("Path traversal ('..') in filename"));
        }
    }
    Ok(())
}

/// `/x`, `\x`, `C:x`.
pub(crate) fn is_absolute(name: &str) -> bool {
    let b = name.as_bytes();
    name.starts_with('/')
        || name.starts_with('\\')
        || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
}

fn local_file_header<R: Read + Seek>(
    w: &mut Walker<R>,
    sizes: &HashMap<&str, u64>,
) -> Result<LocalRecord, Reject> {
    let data = w.read_exact(26)?;
    let gpbf = u16_at(&data, 2);
    let method = u16_at(&data, 4);
    let crc = u32_at(&data, 10);
    let mut compressed = u64::from(u32_at(&data, 14));
    let name_len = usize::from(u16_at(&data, 22));
    let extra_len = usize::from(u16_at(&data, 24));
    let name = w.read_exact(name_len)?;
    let extra = w.read_exact(extra_len)?;
    if unprintable(&name) {
        return Err(Reject::msg("Invalid character in filename"));
    }
    let mut seen: HashSet<u16> = HashSet::new();
    let mut ex = extra.as_slice();
    while !ex.is_empty() {
        if ex.len() < 4 {
            return Err(Reject::msg("Malformed zip file"));
        }
        let id = u16_at(ex, 0);
        let size = usize::from(u16_at(ex, 2));
        if size + 4 > ex.len() {
            return Err(Reject::msg("Malformed zip file"));
        }
        if !seen.insert(id) && (id == ZIP64_EXTRA || id == UNICODE_PATH_EXTRA) {
            return Err(Reject::msg("Invalid duplicate extra in local file"));
        }
        if id == ZIP64_EXTRA {
            match size {
                0 => {
                    if compressed == 0xFFFF_FFFF {
                        return Err(Reject::msg("Malformed zip file"));
                    }
                }
                8 => {
                    if method != 0 {
                        return Err(Reject::msg("Malformed zip file"));
                    }
                    compressed = u64_at(ex, 4);
                }
                16 | 24 | 28 => compressed = u64_at(ex, 12),
                _ => return Err(Reject::msg("Malformed zip file")),
            }
        } else if id == UNICODE_PATH_EXTRA {
            let unicode_name = ex.get(9..4 + size).unwrap_or(&[]);
            if unprintable(unicode_name) {
                return Err(Reject::msg("Invalid character in filename"));
            }
            if std::str::from_utf8(unicode_name).is_err() {
                return Err(Reject::msg("Filename not valid UTF-8"));
            }
        }
        ex = &ex[4 + size..];
    }
    if gpbf & 0x08 != 0 {
        return Err(Reject::msg("ZIP contains a data descriptor"));
    }
    let Ok(name_str) = std::str::from_utf8(&name) else {
        return Err(Reject::msg("Filename not unicode"));
    };
    match sizes.get(name_str) {
        None => return Err(Reject::msg("Filename not in central directory")),
        Some(&cd_size) if cd_size != compressed => {
            return Err(Reject::msg("Mis-matched data size"));
        }
        Some(_) => {}
    }
    w.skip(compressed)?;
    Ok(LocalRecord { name, method, crc })
}
