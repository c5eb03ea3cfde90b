//! Distributions built deterministically in Rust (a wheel with fixed timestamps, an sdist with
//! a fixed mtime), so their digests are the same on every run, and the multipart upload form
//! twine sends for them.

use std::io::{Cursor, Write};

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
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(length + 8);
    while bytes.len() < length {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    bytes.truncate(length);
    bytes
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

    /// The same distribution under another filename.
    pub fn renamed(mut self, filename: &str) -> Dist {
        self.filename = filename.to_owned();
        self
    }

    /// The upload form twine sends for this file (with sha256 and blake2 digests).
    pub fn form(&self) -> Form {
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
            .field("sha256_digest", &self.sha256())
            .field("blake2_256_digest", &self.blake2_256())
            .file(
                "content",
                &self.filename,
                Some("application/octet-stream"),
                &self.bytes,
            )
    }
}

fn zip_options(method: zip::CompressionMethod) -> zip::write::SimpleFileOptions {
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
        }
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
        let stem = filename_name(&self.name);
        let module = stem.clone();
        let dist_info = format!("{stem}-{}.dist-info", self.version);
        let metadata = core_metadata(&self.name, &self.version);
        let mut members: Vec<(String, Vec<u8>, zip::CompressionMethod)> = vec![(
            format!("{module}/__init__.py"),
            format!("def hello():\n    return {:?}\n", self.greeting).into_bytes(),
            zip::CompressionMethod::Deflated,
        )];
        if self.padding > 0 {
            members.push((
                format!("{module}/padding.bin"),
                filler(self.padding, self.padding as u64),
                zip::CompressionMethod::Stored,
            ));
        }
        members.push((
            format!("{dist_info}/METADATA"),
            metadata.clone().into_bytes(),
            zip::CompressionMethod::Deflated,
        ));
        if self.with_wheel_file {
            members.push((
                format!("{dist_info}/WHEEL"),
                b"Wheel-Version: 1.0\nGenerator: wharf-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec(),
                zip::CompressionMethod::Deflated,
            ));
        }
        let record_path = format!("{dist_info}/RECORD");
        let mut record = String::new();
        for (path, bytes, _) in &members {
            let hash =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digests(bytes).sha256);
            record.push_str(&format!("{path},sha256={hash},{}\n", bytes.len()));
        }
        record.push_str(&format!("{record_path},,\n"));
        members.push((
            record_path,
            record.into_bytes(),
            zip::CompressionMethod::Deflated,
        ));

        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (path, bytes, method) in &members {
            writer
                .start_file(path.as_str(), zip_options(*method))
                .expect("zip member");
            writer.write_all(bytes).expect("zip member bytes");
        }
        let bytes = writer.finish().expect("zip").into_inner();
        Dist {
            name: self.name.clone(),
            version: self.version.clone(),
            filename: format!("{stem}-{}-py3-none-any.whl", self.version),
            filetype: "bdist_wheel",
            pyversion: "py3",
            bytes,
            metadata,
        }
    }
}

/// Builds an sdist (`.tar.gz`) with a fixed mtime.
#[derive(Debug, Clone)]
pub struct SdistBuilder {
    name: String,
    version: String,
    greeting: String,
}

impl SdistBuilder {
    /// An sdist for `name` `version` with `<top>/PKG-INFO`, `<top>/pyproject.toml` and a module.
    pub fn new(name: &str, version: &str) -> SdistBuilder {
        SdistBuilder {
            name: name.to_owned(),
            version: version.to_owned(),
            greeting: "hello".to_owned(),
        }
    }

    /// Changes the module's greeting (different bytes, same filename).
    pub fn greeting(mut self, greeting: &str) -> SdistBuilder {
        self.greeting = greeting.to_owned();
        self
    }

    /// The sdist.
    pub fn build(&self) -> Dist {
        let stem = filename_name(&self.name);
        let top = format!("{stem}-{}", self.version);
        let metadata = core_metadata(&self.name, &self.version);
        let members: Vec<(String, Vec<u8>)> = vec![
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
        let encoder = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::default());
        let mut archive = tar::Builder::new(encoder);
        archive.mode(tar::HeaderMode::Deterministic);
        for (path, bytes) in &members {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(FIXED_MTIME);
            header.set_uid(0);
            header.set_gid(0);
            header.set_cksum();
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
        let mut body = Vec::new();
        for (name, value) in &self.fields {
            body.extend_from_slice(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        if let Some(file) = &self.file {
            body.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n",
                    file.field, file.filename
                )
                .as_bytes(),
            );
            if let Some(content_type) = &file.content_type {
                body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(&file.bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        body
    }
}

/// `Authorization` value twine sends for an API token: Basic `__token__:<token>`.
pub fn token_auth(token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("__token__:{token}"))
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
