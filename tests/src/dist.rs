//! Distributions built deterministically in Rust (a wheel with fixed timestamps, an sdist with
//! a fixed mtime), so their digests are the same on every run, and the multipart upload form
//! twine sends for them.

use std::io::{Cursor, Read, Write};

use base64::Engine;
use wharf_archive::digest::{Digests, digest_bytes};

/// The timestamp every archive member carries (2023-11-14T22:13:20Z).
pub const FIXED_MTIME: u64 = 1_700_000_000;

/// The `Requires-Python` of every fixture distribution.
pub const REQUIRES_PYTHON: &str = ">=3.8";

/// PEP 503 normalization: lower-case, runs of `-`, `_`, `.` become one `-`.
pub fn normalize(name: &str) -> String {
    let mut normalized = String::with_capacity(name.len());
    let mut in_separator = false;
    for character in name.chars() {
        if matches!(character, '-' | '_' | '.') {
            if !in_separator {
                normalized.push('-');
            }
            in_separator = true;
        } else {
            normalized.extend(character.to_lowercase());
            in_separator = false;
        }
    }
    normalized
}

/// The name as it appears in distribution filenames: normalized, `-` → `_`.
pub fn filename_name(name: &str) -> String {
    normalize(name).replace('-', "_")
}

/// The three digests (md5, sha256, blake2b-256) of `bytes`.
pub fn digests(bytes: &[u8]) -> Digests {
    digest_bytes(bytes)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    digests(bytes).sha256_hex()
}

/// Lower-case hex BLAKE2b-256 of `bytes`.
pub fn blake2_256_hex(bytes: &[u8]) -> String {
    digests(bytes).blake2_256_hex()
}

/// Lower-case hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    digests(bytes).md5_hex()
}

/// Deterministic incompressible filler bytes (xorshift64*), for large test files.
pub fn filler(length: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; length];
    Filler::new(seed).fill(&mut bytes);
    bytes
}

/// The endless stream of [`filler`] bytes for `seed`, for files too large to hold in memory.
#[derive(Debug, Clone)]
pub struct Filler {
    state: u64,
}

impl Filler {
    /// The stream `filler(_, seed)` starts with.
    pub fn new(seed: u64) -> Filler {
        Filler { state: seed | 1 }
    }

    /// Fills `buffer` with the next bytes; `buffer.len()` must be a multiple of 8 except for
    /// the last call (a partial word is dropped).
    pub fn fill(&mut self, buffer: &mut [u8]) {
        for word in buffer.chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let bytes = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
    }
}

impl Read for Filler {
    /// A read into fewer than 8 bytes drops the rest of its word, as [`filler`] truncates.
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let length = if buffer.len() >= 8 {
            buffer.len() / 8 * 8
        } else {
            buffer.len()
        };
        self.fill(&mut buffer[..length]);
        Ok(length)
    }
}

/// The core metadata text of a fixture release (METADATA in a wheel, PKG-INFO in an sdist).
pub fn core_metadata(name: &str, version: &str) -> String {
    format!(
        "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: Wharf HTTP API fixture\n\
         Requires-Python: {REQUIRES_PYTHON}\n\nFixture distribution for {name}.\n"
    )
}

/// A distribution file ready to upload.
#[derive(Debug, Clone)]
pub struct Dist {
    /// The project name as the metadata spells it.
    pub name: String,
    /// The version as the metadata spells it.
    pub version: String,
    /// The distribution filename.
    pub filename: String,
    /// `bdist_wheel` or `sdist`.
    pub filetype: &'static str,
    /// `py3` for wheels, `source` for sdists.
    pub pyversion: &'static str,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// The METADATA / PKG-INFO text inside it.
    pub metadata: String,
}

impl Dist {
    /// A pure-Python wheel `<name>-<version>-py3-none-any.whl`.
    pub fn wheel(name: &str, version: &str) -> Dist {
        WheelBuilder::new(name, version).build()
    }

    /// An sdist `<name>-<version>.tar.gz`.
    pub fn sdist(name: &str, version: &str) -> Dist {
        SdistBuilder::new(name, version).build()
    }

    /// The file's digests.
    pub fn digests(&self) -> Digests {
        digests(&self.bytes)
    }

    /// Hex SHA-256 of the file.
    pub fn sha256(&self) -> String {
        self.digests().sha256_hex()
    }

    /// Hex BLAKE2b-256 of the file.
    pub fn blake2_256(&self) -> String {
        self.digests().blake2_256_hex()
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Writes the file into `dir` under its filename and returns the path (for a client).
    pub fn write_into(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join(&self.filename);
        std::fs::write(&path, &self.bytes).expect("write the distribution");
        path
    }

    /// The same distribution under another filename.
    pub fn renamed(mut self, filename: &str) -> Dist {
        self.filename = filename.to_owned();
        self
    }

    /// The upload form twine sends for this file (with sha256 and blake2 digests).
    pub fn form(&self) -> Form {
        let digests = self.digests();
        self.form_with(&digests.sha256_hex(), &digests.blake2_256_hex())
    }

    /// The upload form twine sends for this file, with the digests given (for a file whose
    /// bytes are streamed rather than held in `bytes`).
    pub fn form_with(&self, sha256_hex: &str, blake2_256_hex: &str) -> Form {
        Form::new()
            .field(":action", "file_upload")
            .field("protocol_version", "1")
            .field("metadata_version", "2.1")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("summary", "Wharf HTTP API fixture")
            .field("requires_python", REQUIRES_PYTHON)
            .field("filetype", self.filetype)
            .field("pyversion", self.pyversion)
            .field("sha256_digest", sha256_hex)
            .field("blake2_256_digest", blake2_256_hex)
            .file(
                "content",
                &self.filename,
                Some("application/octet-stream"),
                &self.bytes,
            )
    }
}

/// Zip member options with a fixed timestamp and mode.
pub fn zip_options(method: zip::CompressionMethod) -> zip::write::SimpleFileOptions {
    let time =
        zip::DateTime::from_date_and_time(2023, 11, 14, 22, 13, 20).expect("a valid zip time");
    zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .last_modified_time(time)
        .unix_permissions(0o644)
}

/// Builds a wheel with fixed timestamps.
#[derive(Debug, Clone)]
pub struct WheelBuilder {
    name: String,
    version: String,
    with_wheel_file: bool,
    padding: usize,
    greeting: String,
    members: Vec<(String, Vec<u8>)>,
}

impl WheelBuilder {
    /// A wheel for `name` `version` with `METADATA`, `WHEEL`, `RECORD` and a module.
    pub fn new(name: &str, version: &str) -> WheelBuilder {
        WheelBuilder {
            name: name.to_owned(),
            version: version.to_owned(),
            with_wheel_file: true,
            padding: 0,
            greeting: "hello".to_owned(),
            members: Vec::new(),
        }
    }

    /// Adds a member at `path` (listed in `RECORD`); `{dist_info}` in `path` becomes the
    /// wheel's `<name>-<version>.dist-info`.
    pub fn member(mut self, path: &str, bytes: &[u8]) -> WheelBuilder {
        self.members.push((path.to_owned(), bytes.to_vec()));
        self
    }

    /// Leaves out `<name>-<version>.dist-info/WHEEL` (an invalid wheel).
    pub fn without_wheel_file(mut self) -> WheelBuilder {
        self.with_wheel_file = false;
        self
    }

    /// Adds a stored (uncompressed) data file of `bytes` incompressible bytes.
    pub fn padding(mut self, bytes: usize) -> WheelBuilder {
        self.padding = bytes;
        self
    }

    /// Changes the module's greeting (different bytes, same filename).
    pub fn greeting(mut self, greeting: &str) -> WheelBuilder {
        self.greeting = greeting.to_owned();
        self
    }

    /// The wheel.
    pub fn build(&self) -> Dist {
        let mut zip = Cursor::new(Vec::new());
        let mut dist = self.write_to(&mut zip).expect("zip");
        dist.bytes = zip.into_inner();
        dist
    }

    /// The file name `<name>-<version>-py3-none-any.whl`.
    pub fn filename(&self) -> String {
        format!(
            "{}-{}-py3-none-any.whl",
            filename_name(&self.name),
            self.version
        )
    }

    /// Writes the wheel to `out`, streaming the padding (so a wheel of any size needs no
    /// memory for it); the returned [`Dist`] has empty `bytes`.
    pub fn write_to<W: Write + std::io::Seek>(&self, out: W) -> zip::result::ZipResult<Dist> {
        let stem = filename_name(&self.name);
        let dist_info = format!("{stem}-{}.dist-info", self.version);
        let metadata = core_metadata(&self.name, &self.version);
        let mut writer = zip::ZipWriter::new(out);
        let mut record = String::new();
        let add =
            |writer: &mut zip::ZipWriter<W>, record: &mut String, path: String, bytes: &[u8]| {
                writer.start_file(path.as_str(), zip_options(zip::CompressionMethod::Deflated))?;
                writer.write_all(bytes)?;
                record.push_str(&record_line(&path, &digests(bytes), bytes.len() as u64));
                zip::result::ZipResult::Ok(())
            };
        add(
            &mut writer,
            &mut record,
            format!("{stem}/__init__.py"),
            format!("def hello():\n    return {:?}\n", self.greeting).as_bytes(),
        )?;
        for (path, bytes) in &self.members {
            let path = path.replace("{dist_info}", &dist_info);
            add(&mut writer, &mut record, path, bytes)?;
        }
        if self.padding > 0 {
            let path = format!("{stem}/padding.bin");
            writer.start_file(path.as_str(), zip_options(zip::CompressionMethod::Stored))?;
            let mut hashed = HashingWriter {
                inner: &mut writer,
                hasher: wharf_archive::MultiHasher::new(),
            };
            let mut padding = Filler::new(self.padding as u64).take(self.padding as u64);
            std::io::copy(&mut padding, &mut hashed)?;
            let digests = hashed.hasher.finalize();
            record.push_str(&record_line(&path, &digests, self.padding as u64));
        }
        add(
            &mut writer,
            &mut record,
            format!("{dist_info}/METADATA"),
            metadata.as_bytes(),
        )?;
        if self.with_wheel_file {
            add(
                &mut writer,
                &mut record,
                format!("{dist_info}/WHEEL"),
                b"Wheel-Version: 1.0\nGenerator: wharf-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            )?;
        }
        let record_path = format!("{dist_info}/RECORD");
        record.push_str(&format!("{record_path},,\n"));
        writer.start_file(
            record_path.as_str(),
            zip_options(zip::CompressionMethod::Deflated),
        )?;
        writer.write_all(record.as_bytes())?;
        writer.finish()?;
        Ok(Dist {
            name: self.name.clone(),
            version: self.version.clone(),
            filename: self.filename(),
            filetype: "bdist_wheel",
            pyversion: "py3",
            bytes: Vec::new(),
            metadata,
        })
    }
}

/// One `RECORD` line: `path,sha256=<urlsafe b64>,size`.
fn record_line(path: &str, digests: &Digests, size: u64) -> String {
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digests.sha256);
    format!("{path},sha256={hash},{size}\n")
}

/// Passes writes through to `inner` and hashes them.
struct HashingWriter<W> {
    inner: W,
    hasher: wharf_archive::MultiHasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Builds an sdist (`.tar.gz`) with a fixed mtime.
#[derive(Debug, Clone)]
pub struct SdistBuilder {
    name: String,
    version: String,
    greeting: String,
    padding: usize,
}

impl SdistBuilder {
    /// An sdist for `name` `version` with `<top>/PKG-INFO`, `<top>/pyproject.toml` and a module.
    pub fn new(name: &str, version: &str) -> SdistBuilder {
        SdistBuilder {
            name: name.to_owned(),
            version: version.to_owned(),
            greeting: "hello".to_owned(),
            padding: 0,
        }
    }

    /// Changes the module's greeting (different bytes, same filename).
    pub fn greeting(mut self, greeting: &str) -> SdistBuilder {
        self.greeting = greeting.to_owned();
        self
    }

    /// Adds a data file of `bytes` incompressible bytes.
    pub fn padding(mut self, bytes: usize) -> SdistBuilder {
        self.padding = bytes;
        self
    }

    /// The sdist.
    pub fn build(&self) -> Dist {
        let stem = filename_name(&self.name);
        let top = format!("{stem}-{}", self.version);
        let metadata = core_metadata(&self.name, &self.version);
        let mut members: Vec<(String, Vec<u8>)> = vec![
            (format!("{top}/PKG-INFO"), metadata.clone().into_bytes()),
            (
                format!("{top}/pyproject.toml"),
                format!(
                    "[project]\nname = \"{}\"\nversion = \"{}\"\nrequires-python = \"{REQUIRES_PYTHON}\"\n",
                    self.name, self.version
                )
                .into_bytes(),
            ),
            (
                format!("{top}/src/{stem}/__init__.py"),
                format!("def hello():\n    return {:?}\n", self.greeting).into_bytes(),
            ),
        ];
        if self.padding > 0 {
            members.push((
                format!("{top}/src/{stem}/padding.bin"),
                filler(self.padding, self.padding as u64),
            ));
        }
        let encoder = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::default());
        let mut archive = tar::Builder::new(encoder);
        archive.mode(tar::HeaderMode::Deterministic);
        for (path, bytes) in &members {
            let mut header = tar_header(bytes.len() as u64);
            archive
                .append_data(&mut header, path, bytes.as_slice())
                .expect("tar member");
        }
        let bytes = archive
            .into_inner()
            .and_then(flate2::write::GzEncoder::finish)
            .expect("tar.gz");
        Dist {
            name: self.name.clone(),
            version: self.version.clone(),
            filename: format!("{top}.tar.gz"),
            filetype: "sdist",
            pyversion: "source",
            bytes,
            metadata,
        }
    }
}

/// The ustar header of a regular sdist member of `size` bytes (fixed mtime, mode and owner).
pub fn tar_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(FIXED_MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    header
}

/// The boundary of every multipart body this module builds.
pub const BOUNDARY: &str = "wharf-e2e-7f3c2a91d5b84e06";

/// A `multipart/form-data` upload form: text fields in order, then at most one file part.
#[derive(Debug, Clone, Default)]
pub struct Form {
    fields: Vec<(String, String)>,
    file: Option<FilePart>,
}

#[derive(Debug, Clone)]
struct FilePart {
    field: String,
    filename: String,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

impl Form {
    /// An empty form.
    pub fn new() -> Form {
        Form::default()
    }

    /// Appends a text field (keys may repeat).
    pub fn field(mut self, name: &str, value: &str) -> Form {
        self.fields.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replaces every value of `name` with one `value` (appended if absent), in place.
    pub fn set(mut self, name: &str, value: &str) -> Form {
        match self.fields.iter().position(|(key, _)| key == name) {
            Some(index) => {
                self.fields[index].1 = value.to_owned();
                let mut seen = false;
                self.fields.retain(|(key, _)| {
                    if key != name {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
            }
            None => self.fields.push((name.to_owned(), value.to_owned())),
        }
        self
    }

    /// Removes every value of `name`.
    pub fn remove(mut self, name: &str) -> Form {
        self.fields.retain(|(key, _)| key != name);
        self
    }

    /// Sets the file part (sent after the text fields).
    pub fn file(
        mut self,
        field: &str,
        filename: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Form {
        self.file = Some(FilePart {
            field: field.to_owned(),
            filename: filename.to_owned(),
            content_type: content_type.map(str::to_owned),
            bytes: bytes.to_vec(),
        });
        self
    }

    /// Drops the file part.
    pub fn without_file(mut self) -> Form {
        self.file = None;
        self
    }

    /// The request's `Content-Type` header value.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={BOUNDARY}")
    }

    /// The encoded body.
    pub fn body(&self) -> Vec<u8> {
        let (mut body, tail) = self.around_file();
        if let Some(file) = &self.file {
            body.extend_from_slice(&file.bytes);
        }
        body.extend_from_slice(&tail);
        body
    }

    /// The encoded body without the file's bytes, split where they go: a client streaming
    /// the file sends the first part, the file, then the second part.
    pub fn around_file(&self) -> (Vec<u8>, Vec<u8>) {
        let mut head = Vec::new();
        for (name, value) in &self.fields {
            head.extend_from_slice(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        let mut tail = Vec::new();
        if let Some(file) = &self.file {
            head.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n",
                    file.field, file.filename
                )
                .as_bytes(),
            );
            if let Some(content_type) = &file.content_type {
                head.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
            }
            head.extend_from_slice(b"\r\n");
            tail.extend_from_slice(b"\r\n");
        }
        tail.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        (head, tail)
    }
}

/// `Authorization` value twine sends for an API token: Basic `__token__:<token>`.
pub fn token_auth(token: &str) -> String {
    basic_auth("__token__", token)
}

/// `Authorization` value for HTTP Basic `user:password`.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// POSTs `form` to `path` on `base_url` as twine does: with the token (if any) and an
/// `Accept` header (if any); the raw response, reason phrase included.
pub fn post_form(
    base_url: &str,
    path: &str,
    token: Option<&str>,
    form: &Form,
    accept: Option<&str>,
) -> crate::raw_http::RawResponse {
    let content_type = form.content_type();
    let auth = token.map(token_auth);
    let mut headers: Vec<(&str, &str)> =
        vec![("Content-Type", &content_type), ("User-Agent", "wharf-e2e")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    if let Some(accept) = accept {
        headers.push(("Accept", accept));
    }
    crate::raw_http::request(base_url, "POST", path, &headers, &form.body())
}
