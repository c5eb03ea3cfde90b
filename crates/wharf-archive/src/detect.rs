//! Format sniffing with Python's semantics (`tarfile.is_tarfile`,
//! `zipfile.is_zipfile`), used to reject zip/tar polyglots.

use std::io::{self, Read, Seek, SeekFrom};

pub(crate) const EOCD_SIG: [u8; 4] = *b"PK\x05\x06";
pub(crate) const EOCD64_SIG: [u8; 4] = *b"PK\x06\x06";
pub(crate) const EOCD64_LOCATOR_SIG: [u8; 4] = *b"PK\x06\x07";
pub(crate) const CENTRAL_SIG: [u8; 4] = *b"PK\x01\x02";
pub(crate) const LOCAL_SIG: [u8; 4] = *b"PK\x03\x04";
pub(crate) const EOCD_LEN: u64 = 22;
pub(crate) const EOCD64_LEN: u64 = 56;
pub(crate) const EOCD64_LOCATOR_LEN: u64 = 20;
const MAX_COMMENT: u64 = 0xFFFF;

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    match b.get(at..at + 8) {
        Some(s) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        }
        None => 0,
    }
}

/// Python's `tarfile.nti`: a numeric header field (octal text or base-256).
pub(crate) fn tar_nti(field: &[u8]) -> Option<i128> {
    let first = *field.first()?;
    if first == 0o200 || first == 0o377 {
        let mut n: i128 = 0;
        for &b in field.get(1..)? {
            n = n.checked_mul(256)?.checked_add(i128::from(b))?;
        }
        if first == 0o377 {
            let width = u32::try_from(field.len() - 1).ok()?;
            n -= 256i128.checked_pow(width)?;
        }
        return Some(n);
    }
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end]).ok()?;
    if !text.is_ascii() {
        return None;
    }
    let t = text.trim_matches(|c: char| {
        c.is_ascii_whitespace() || ('\x1c'..='\x1f').contains(&c) || c == '\x0b'
    });
    if t.is_empty() {
        return Some(0);
    }
    let (neg, digits) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut n: i128 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(8)?;
        n = n.checked_mul(8)?.checked_add(i128::from(d))?;
    }
    Some(if neg { -n } else { n })
}

/// Whether a 512-byte tar header block carries a valid checksum (unsigned or
/// signed sum, as Python's `tarfile` accepts).
pub(crate) fn tar_header_checksum_ok(block: &[u8]) -> bool {
    if block.len() != 512 {
        return false;
    }
    let Some(declared) = tar_nti(&block[148..156]) else {
        return false;
    };
    let mut unsigned: i128 = 256;
    let mut signed: i128 = 256;
    for (i, &b) in block.iter().enumerate() {
        if (148..156).contains(&i) {
            continue;
        }
        unsigned += i128::from(b);
        signed += i128::from(b as i8);
    }
    declared == unsigned || declared == signed
}

/// Whether `first_block` (the first 512 bytes of a file, or fewer if the file is
/// shorter) starts an uncompressed tar archive as Python's `tarfile` sees it:
/// a header with a valid checksum, or an all-zero block (an empty archive).
pub fn looks_like_tar(first_block: &[u8]) -> bool {
    let Some(block) = first_block.get(..512) else {
        return false;
    };
    block.iter().all(|&b| b == 0) || tar_header_checksum_ok(block)
}

/// Like `tarfile.is_tarfile` for the formats that matter here: a plain tar, or a
/// gzip stream whose first decompressed block is a tar header. Reads from the
/// start of `reader`.
pub(crate) fn is_tarfile<R: Read + Seek>(reader: &mut R) -> io::Result<bool> {
    reader.seek(SeekFrom::Start(0))?;
    let mut first = Vec::with_capacity(512);
    reader.by_ref().take(512).read_to_end(&mut first)?;
    if looks_like_tar(&first) {
        return Ok(true);
    }
    if first.starts_with(&[0x1f, 0x8b]) {
        reader.seek(SeekFrom::Start(0))?;
        let mut gz = flate2::read::GzDecoder::new(reader.by_ref().take(1024 * 1024));
        let mut block = Vec::with_capacity(512);
        // A corrupt gzip stream is simply "not a tar".
        if gz.by_ref().take(512).read_to_end(&mut block).is_ok() {
            return Ok(looks_like_tar(&block));
        }
    }
    Ok(false)
}

/// The end-of-central-directory record as Python's `zipfile._EndRecData`
/// finds it (ZIP64 values merged in when present).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Eocd {
    /// Absolute offset of the (classic) EOCD record.
    pub(crate) location: u64,
    pub(crate) disk: u64,
    pub(crate) disk_cd: u64,
    pub(crate) entries_disk: u64,
    pub(crate) entries: u64,
    pub(crate) cd_size: u64,
    pub(crate) cd_offset: u64,
    pub(crate) zip64: bool,
    /// A ZIP64 locator claims multiple disks (Python raises `BadZipFile`).
    pub(crate) multi_disk: bool,
}

impl Eocd {
    /// Where Python expects the central directory to start (it tolerates
    /// prepended data by computing from the EOCD location).
    pub(crate) fn cd_start(&self) -> Option<u64> {
        let extra = if self.zip64 {
            EOCD64_LEN + EOCD64_LOCATOR_LEN
        } else {
            0
        };
        self.location.checked_sub(self.cd_size)?.checked_sub(extra)
    }
}

fn parse_classic(rec: &[u8], location: u64) -> Eocd {
    Eocd {
        location,
        disk: u64::from(u16_at(rec, 4)),
        disk_cd: u64::from(u16_at(rec, 6)),
        entries_disk: u64::from(u16_at(rec, 8)),
        entries: u64::from(u16_at(rec, 10)),
        cd_size: u64::from(u32_at(rec, 12)),
        cd_offset: u64::from(u32_at(rec, 16)),
        zip64: false,
        multi_disk: false,
    }
}

/// `_EndRecData` + `_EndRecData64` over a random-access reader.
pub(crate) fn find_eocd<R: Read + Seek>(r: &mut R, file_len: u64) -> io::Result<Option<Eocd>> {
    if file_len < EOCD_LEN {
        return Ok(None);
    }
    let window_start = file_len.saturating_sub(MAX_COMMENT + EOCD_LEN);
    r.seek(SeekFrom::Start(window_start))?;
    let mut data = Vec::new();
    r.by_ref()
        .take(file_len - window_start)
        .read_to_end(&mut data)?;
    let Some(rel) = eocd_in_window(&data) else {
        return Ok(None);
    };
    let location = window_start + rel as u64;
    let mut eocd = parse_classic(&data[rel..], location);
    // ZIP64 locator immediately before the EOCD?
    if location >= EOCD64_LOCATOR_LEN {
        let mut loc = [0u8; EOCD64_LOCATOR_LEN as usize];
        r.seek(SeekFrom::Start(location - EOCD64_LOCATOR_LEN))?;
        if read_full(r, &mut loc)? && loc[..4] == EOCD64_LOCATOR_SIG {
            let disk_with_eocd64 = u32_at(&loc, 4);
            let disks = u32_at(&loc, 16);
            if disk_with_eocd64 != 0 || disks > 1 {
                eocd.multi_disk = true;
                return Ok(Some(eocd));
            }
            let rec_at = (location - EOCD64_LOCATOR_LEN).checked_sub(EOCD64_LEN);
            if let Some(rec_at) = rec_at {
                let mut rec = [0u8; EOCD64_LEN as usize];
                r.seek(SeekFrom::Start(rec_at))?;
                if read_full(r, &mut rec)? && rec[..4] == EOCD64_SIG {
                    eocd.zip64 = true;
                    eocd.disk = u64::from(u32_at(&rec, 16));
                    eocd.disk_cd = u64::from(u32_at(&rec, 20));
                    eocd.entries_disk = u64_at(&rec, 24);
                    eocd.entries = u64_at(&rec, 32);
                    eocd.cd_size = u64_at(&rec, 40);
                    eocd.cd_offset = u64_at(&rec, 48);
                }
            }
        }
    }
    Ok(Some(eocd))
}

/// Index of the EOCD record inside `window` (the last 64 KiB + 22 bytes of a
/// file), as `_EndRecData` chooses it.
pub(crate) fn eocd_in_window(window: &[u8]) -> Option<usize> {
    let n = window.len();
    if n < EOCD_LEN as usize {
        return None;
    }
    let last = n - EOCD_LEN as usize;
    if window[last..last + 4] == EOCD_SIG && window[n - 2..] == [0, 0] {
        return Some(last);
    }
    let start = window.windows(4).rposition(|w| w == EOCD_SIG)?;
    // The record must fit entirely.
    (start + EOCD_LEN as usize <= n).then_some(start)
}

pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// `zipfile.is_zipfile` (CPython ≥ 3.13 semantics: an EOCD record, and either an
/// empty archive or a central-directory signature where the EOCD says the
/// directory starts).
pub(crate) fn is_zipfile<R: Read + Seek>(r: &mut R, file_len: u64) -> io::Result<Option<Eocd>> {
    let Some(eocd) = find_eocd(r, file_len)? else {
        return Ok(None);
    };
    if eocd.multi_disk {
        return Ok(None);
    }
    if eocd.entries == 0 && eocd.cd_size == 0 && eocd.cd_offset == 0 {
        return Ok(Some(eocd));
    }
    if eocd.disk != eocd.disk_cd || eocd.cd_size < 46 {
        return Ok(None);
    }
    let Some(start) = eocd.cd_start() else {
        return Ok(None);
    };
    let mut sig = [0u8; 4];
    r.seek(SeekFrom::Start(start))?;
    Ok((read_full(r, &mut sig)? && sig == CENTRAL_SIG).then_some(eocd))
}

/// Whether the final bytes of a file (`tail`, which starts at absolute offset
/// `tail_start` of a file of `tail_start + tail.len()` bytes) make it a zip
/// for `zipfile.is_zipfile`. Used for streamed sdists, which cannot seek back:
/// when the central directory would start before the retained tail the answer
/// is a conservative `true`.
pub(crate) fn tail_is_zip(tail: &[u8], tail_start: u64) -> bool {
    let window_from = tail.len().saturating_sub((MAX_COMMENT + EOCD_LEN) as usize);
    let Some(rel) = eocd_in_window(&tail[window_from..]) else {
        return false;
    };
    let idx = window_from + rel;
    let location = tail_start + idx as u64;
    let mut eocd = parse_classic(&tail[idx..], location);
    if idx >= EOCD64_LOCATOR_LEN as usize
        && tail[idx - EOCD64_LOCATOR_LEN as usize..idx - EOCD64_LOCATOR_LEN as usize + 4]
            == EOCD64_LOCATOR_SIG
    {
        // ZIP64 polyglots are exotic: be conservative.
        return true;
    } else if idx < EOCD64_LOCATOR_LEN as usize && tail_start > 0 {
        return true;
    }
    eocd.zip64 = false;
    if eocd.entries == 0 && eocd.cd_size == 0 && eocd.cd_offset == 0 {
        return true;
    }
    if eocd.disk != eocd.disk_cd || eocd.cd_size < 46 {
        return false;
    }
    let Some(start) = eocd.cd_start() else {
        return false;
    };
    match start.checked_sub(tail_start) {
        Some(off) => {
            let off = off as usize;
            tail.get(off..off + 4) == Some(&CENTRAL_SIG[..])
        }
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nti_matches_python() {
        assert_eq!(tar_nti(b"0000644\0"), Some(0o644));
        assert_eq!(tar_nti(b"  644 \0"), Some(0o644));
        assert_eq!(tar_nti(b"\0\0\0\0"), Some(0));
        assert_eq!(tar_nti(b"        "), Some(0));
        assert_eq!(tar_nti(b"0009\0"), None);
        assert_eq!(tar_nti(&[0x80, 0, 0, 1, 0]), Some(256));
        assert_eq!(tar_nti(&[0xff, 0xff, 0xff, 0xff]), Some(-1));
        assert_eq!(tar_nti(b""), None);
    }

    #[test]
    fn eocd_window_search() {
        let mut rec = vec![0u8; 22];
        rec[..4].copy_from_slice(&EOCD_SIG);
        assert_eq!(eocd_in_window(&rec), Some(0));
        let mut with_comment = rec.clone();
        with_comment[20] = 3;
        with_comment.extend_from_slice(b"abc");
        assert_eq!(eocd_in_window(&with_comment), Some(0));
        assert_eq!(eocd_in_window(&rec[..21]), None);
        // Signature too close to the end for a full record.
        let mut short = vec![1u8; 30];
        short[20..24].copy_from_slice(&EOCD_SIG);
        assert_eq!(eocd_in_window(&short), None);
    }

    #[test]
    fn tail_zip_detection() {
        // Empty zip: just an EOCD with zeros.
        let mut rec = vec![0u8; 22];
        rec[..4].copy_from_slice(&EOCD_SIG);
        assert!(tail_is_zip(&rec, 0));
        // Non-empty, central directory signature where the EOCD says.
        let mut z = CENTRAL_SIG.to_vec();
        z.extend_from_slice(&[0u8; 42]);
        let mut eocd = vec![0u8; 22];
        eocd[..4].copy_from_slice(&EOCD_SIG);
        eocd[10] = 1;
        eocd[12] = 46;
        z.extend_from_slice(&eocd);
        assert!(tail_is_zip(&z, 0));
        z[0] = b'X';
        assert!(!tail_is_zip(&z, 0));
        // The central directory would start before the retained tail: conservative.
        assert!(tail_is_zip(&z[10..], 10));
        let mut far = eocd.clone();
        far[12..16].copy_from_slice(&4096u32.to_le_bytes());
        assert!(tail_is_zip(&far, 1 << 20), "conservative when unseen");
        assert!(
            !tail_is_zip(&far, 0),
            "directory cannot start before byte 0"
        );
    }
}
