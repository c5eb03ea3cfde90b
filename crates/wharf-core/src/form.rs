//! Validation of the legacy upload form (spec a.3–a.4 steps 2–5).

use crate::filename::FileType;
pub use crate::metadata::ReleaseMetadata;
use crate::metadata::{FieldError, metadata_rejection, pick, split_project_url, validate_metadata};
use crate::pyrepr::repr;
use crate::refusal::Refusal;
use crate::version::Version;

/// Digests the client declared, lower-case hex.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredDigests {
    /// `md5_digest`.
    pub md5: Option<String>,
    /// `sha256_digest`.
    pub sha256: Option<String>,
    /// `blake2_256_digest`.
    pub blake2_256: Option<String>,
}

/// An upload form that passed every check that needs nothing but the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedUpload {
    /// Declared distribution type.
    pub filetype: FileType,
    /// `pyversion` (`source` for sdists).
    pub pyversion: String,
    /// Declared digests.
    pub declared: DeclaredDigests,
    /// `comment`, if any.
    pub comment: Option<String>,
    /// Release metadata from the form; `version` holds the normalized version.
    pub metadata: ReleaseMetadata,
    /// The form carries an `attestations` field (PEP 740), after sanitisation.
    pub attestations: bool,
}

const NAME_REGEX_MESSAGE: &str =
    "Start and end with a letter or numeral containing only ASCII numeric and '.', '_' and '-'.";
const REQUIRED: &str = "This field is required.";

/// Applies PyPI's sanitisation: a field whose (last) value strips to `UNKNOWN` is dropped
/// entirely, and NUL characters are escaped as `\x00`.
pub fn sanitize_fields(fields: &[(String, String)]) -> Vec<(String, String)> {
    let unknown: Vec<&str> = fields
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| {
            fields
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .is_some_and(|(_, v)| v.trim() == "UNKNOWN")
        })
        .collect();
    fields
        .iter()
        .filter(|(k, _)| !unknown.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.replace('\0', "\\x00")))
        .collect()
}

/// All values of `key`, in order.
fn all<'a>(fields: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The first value of `key` (what a WTForms `StringField` reads).
fn first<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Checks `protocol_version` (spec a.4 step 3).
pub fn check_protocol_version(fields: &[(String, String)]) -> Result<(), Refusal> {
    match fields.iter().rev().find(|(k, _)| k == "protocol_version") {
        Some((_, v)) if v != "1" => Err(Refusal::bad_request("Unknown protocol version.")),
        _ => Ok(()),
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A WTForms `Optional()` field: absent or whitespace-only means "not given".
fn optional<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    first(fields, key).filter(|v| !v.trim().is_empty())
}

/// Validates the `UploadForm` part (name, filetype, pyversion, digests), step 4.
fn check_upload_form(
    fields: &[(String, String)],
) -> Result<(FileType, String, DeclaredDigests), Refusal> {
    let name = first(fields, "name").unwrap_or_default();
    let name_error = if name.is_empty() {
        Some(REQUIRED)
    } else if !crate::name::is_valid_project_name(name) {
        Some(NAME_REGEX_MESSAGE)
    } else {
        None
    };
    if let Some(reason) = name_error {
        let chars: Vec<char> = name.chars().collect();
        let shown = if chars.len() > 60 {
            let head: String = chars[..30].iter().collect();
            let tail: String = chars[chars.len() - 30..].iter().collect();
            format!("{head}...{tail}")
        } else {
            name.to_owned()
        };
        return Err(Refusal::bad_request(format!(
            "{} is an invalid value for Name. Error: {reason} \
             See https://packaging.python.org/specifications/core-metadata for more information.",
            repr(&shown)
        )));
    }
    let field_error = |field: &str, reason: &str| {
        Err(Refusal::bad_request(format!(
            "Invalid value for {field}. Error: {reason}"
        )))
    };
    // Remaining field errors in alphabetical order of the field name.
    if optional(fields, "blake2_256_digest").is_some_and(|d| !is_hex64(d)) {
        return field_error(
            "blake2_256_digest",
            "Use a valid, hex-encoded, BLAKE2 message digest.",
        );
    }
    let filetype = match first(fields, "filetype") {
        None | Some("") => return field_error("filetype", REQUIRED),
        Some(ft) => match FileType::parse(ft) {
            Some(ft) => ft,
            None => return field_error("filetype", "Use a known file type."),
        },
    };
    if optional(fields, "sha256_digest").is_some_and(|d| !is_hex64(d)) {
        return field_error(
            "sha256_digest",
            "Use a valid, hex-encoded, SHA256 message digest.",
        );
    }
    // PyPI adds these two to the `pyversion` field's errors (Warehouse
    // `forklift/forms.py`, `UploadForm.validate`), so they read as field errors.
    let pyversion = first(fields, "pyversion").unwrap_or_default();
    let pyversion = match filetype {
        FileType::BdistWheel if pyversion.is_empty() => {
            return field_error(
                "pyversion",
                "Python version is required for binary distribution uploads.",
            );
        }
        FileType::BdistWheel => pyversion.to_owned(),
        FileType::Sdist if pyversion.is_empty() || pyversion == "source" => "source".to_owned(),
        FileType::Sdist => {
            return field_error("pyversion", "Use 'source' as Python version for an sdist.");
        }
    };
    let form_error = |reason: &str| Err(Refusal::bad_request(format!("Error: {reason}")));
    let digest = |key: &str| optional(fields, key).map(|d| d.trim().to_ascii_lowercase());
    let declared = DeclaredDigests {
        md5: digest("md5_digest"),
        sha256: digest("sha256_digest"),
        blake2_256: digest("blake2_256_digest"),
    };
    if declared.md5.is_none() && declared.sha256.is_none() && declared.blake2_256.is_none() {
        return form_error("Include at least one message digest.");
    }
    Ok((filetype, pyversion, declared))
}

/// Single-use metadata form fields.
const STRING_FIELDS: [&str; 15] = [
    "metadata_version",
    "name",
    "version",
    "summary",
    "description",
    "description_content_type",
    "home_page",
    "download_url",
    "author",
    "author_email",
    "maintainer",
    "maintainer_email",
    "license",
    "license_expression",
    "requires_python",
];
/// Multiple-use metadata form fields.
const LIST_FIELDS: [&str; 15] = [
    "license_file",
    "classifiers",
    "platform",
    "supported_platform",
    "requires_dist",
    "provides_dist",
    "obsoletes_dist",
    "requires_external",
    "requires",
    "provides",
    "obsoletes",
    "provides_extra",
    "dynamic",
    "import_name",
    "import_namespace",
];

fn set_string(m: &mut ReleaseMetadata, key: &str, value: String) {
    let slot = match key {
        "metadata_version" => &mut m.metadata_version,
        "name" => &mut m.name,
        "version" => &mut m.version,
        "summary" => &mut m.summary,
        "description" => &mut m.description,
        "description_content_type" => &mut m.description_content_type,
        "home_page" => &mut m.home_page,
        "download_url" => &mut m.download_url,
        "author" => &mut m.author,
        "author_email" => &mut m.author_email,
        "maintainer" => &mut m.maintainer,
        "maintainer_email" => &mut m.maintainer_email,
        "license" => &mut m.license,
        "license_expression" => &mut m.license_expression,
        "requires_python" => &mut m.requires_python,
        "keywords" => &mut m.keywords,
        _ => return,
    };
    *slot = Some(value);
}

fn list_mut<'a>(m: &'a mut ReleaseMetadata, key: &str) -> Option<&'a mut Vec<String>> {
    Some(match key {
        "license_file" => &mut m.license_file,
        "classifiers" => &mut m.classifiers,
        "platform" => &mut m.platform,
        "supported_platform" => &mut m.supported_platform,
        "requires_dist" => &mut m.requires_dist,
        "provides_dist" => &mut m.provides_dist,
        "obsoletes_dist" => &mut m.obsoletes_dist,
        "requires_external" => &mut m.requires_external,
        "requires" => &mut m.requires,
        "provides" => &mut m.provides,
        "obsoletes" => &mut m.obsoletes,
        "provides_extra" => &mut m.provides_extra,
        "dynamic" => &mut m.dynamic,
        "project_urls" => &mut m.project_urls,
        "import_name" => &mut m.import_name,
        "import_namespace" => &mut m.import_namespace,
        _ => return None,
    })
}

/// Builds release metadata from form fields (Warehouse's `parse_form_metadata`): a field
/// sent as the single value `""` is absent; a single-use field sent twice, or project URLs
/// with a repeated label, is `'<field>' has invalid data`.
pub fn form_metadata(fields: &[(String, String)]) -> Result<ReleaseMetadata, Refusal> {
    let mut m = ReleaseMetadata::default();
    let mut unparsed: Vec<FieldError> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (key, _) in fields {
        let key = key.as_str();
        let known = STRING_FIELDS.contains(&key)
            || LIST_FIELDS.contains(&key)
            || key == "keywords"
            || key == "project_urls";
        if !known || seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let values = all(fields, key);
        if values == [""] {
            continue;
        }
        if (STRING_FIELDS.contains(&key) || key == "keywords") && values.len() == 1 {
            set_string(&mut m, key, values.concat());
        } else if key == "project_urls" {
            let mut labels: Vec<String> = Vec::new();
            let duplicate = values.iter().any(|v| {
                let (label, _) = split_project_url(v);
                let dup = labels.contains(&label);
                labels.push(label);
                dup
            });
            if duplicate {
                unparsed.push(FieldError {
                    field: key.to_owned(),
                    message: format!("{} has invalid data", repr(key)),
                });
            } else {
                m.project_urls = values.iter().map(|v| (*v).to_owned()).collect();
            }
        } else if let Some(list) = list_mut(&mut m, key).filter(|_| LIST_FIELDS.contains(&key)) {
            *list = values.iter().map(|v| (*v).to_owned()).collect();
        } else {
            unparsed.push(FieldError {
                field: key.to_owned(),
                message: format!("{} has invalid data", repr(key)),
            });
        }
    }
    match pick(&unparsed) {
        Some(e) => Err(metadata_rejection(e)),
        None => Ok(m),
    }
}

/// Validates every non-file multipart field of an upload (in order, keys may repeat): spec
/// a.3 sanitisation, a.4 step 3 (protocol version), step 4 (upload form) and step 5 (core
/// metadata), returning the first failure with PyPI's text.
pub fn validate_upload_form(fields: &[(String, String)]) -> Result<ValidatedUpload, Refusal> {
    let fields = sanitize_fields(fields);
    check_protocol_version(&fields)?;
    let (filetype, pyversion, declared) = check_upload_form(&fields)?;
    let mut metadata = form_metadata(&fields)?;
    validate_metadata(&metadata)?;
    // Validation guarantees a parseable version; store its normalized form.
    if let Some(v) = metadata
        .version
        .as_deref()
        .and_then(|v| Version::parse(v).ok())
    {
        metadata.version = Some(v.normalized());
    }
    let comment = first(&fields, "comment")
        .filter(|c| !c.trim().is_empty())
        .map(str::to_owned);
    Ok(ValidatedUpload {
        filetype,
        pyversion,
        declared,
        comment,
        metadata,
        attestations: fields.iter().any(|(key, _)| key == "attestations"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHA: &str = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    const HELP: &str =
        "See https://packaging.python.org/specifications/core-metadata for more information.";

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn base() -> Vec<(String, String)> {
        f(&[
            (":action", "file_upload"),
            ("protocol_version", "1"),
            ("metadata_version", "2.1"),
            ("name", "Foo.Bar"),
            ("version", "v1.0"),
            ("filetype", "sdist"),
            ("pyversion", "source"),
            ("sha256_digest", SHA),
        ])
    }

    fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v = base();
        v.extend(f(extra));
        v
    }

    fn without(keys: &[&str]) -> Vec<(String, String)> {
        base()
            .into_iter()
            .filter(|(k, _)| !keys.contains(&k.as_str()))
            .collect()
    }

    fn replace(key: &str, value: &str) -> Vec<(String, String)> {
        base()
            .into_iter()
            .map(|(k, v)| {
                if k == key {
                    (k, value.to_owned())
                } else {
                    (k, v)
                }
            })
            .collect()
    }

    fn msg(fields: &[(String, String)]) -> String {
        validate_upload_form(fields).unwrap_err().message
    }

    #[test]
    fn valid_upload() {
        let v = validate_upload_form(&with(&[
            ("md5_digest", "ABCDEF"),
            ("comment", "hi"),
            ("classifiers", "Programming Language :: Python :: 3"),
            ("classifiers", "License :: OSI Approved :: MIT License"),
            ("project_urls", "Homepage, https://example.org"),
            ("project_urls", "Source, https://example.org/src"),
            ("keywords", "a, b,c"),
            ("requires_dist", "requests>=2"),
            ("requires_python", ">=3.9"),
            ("author_email", "Jane Doe <jane@example.org>"),
            ("home_page", "https://example.org"),
            ("unknown_field", "ignored"),
            ("gpg_signature", "ignored"),
        ]))
        .unwrap();
        assert_eq!(v.filetype, FileType::Sdist);
        assert_eq!(v.pyversion, "source");
        assert_eq!(
            v.declared.sha256.as_deref(),
            Some(SHA.to_ascii_lowercase().as_str())
        );
        assert_eq!(v.declared.md5.as_deref(), Some("abcdef"));
        assert_eq!(v.declared.blake2_256, None);
        assert_eq!(v.comment.as_deref(), Some("hi"));
        assert_eq!(v.metadata.name.as_deref(), Some("Foo.Bar"));
        assert_eq!(v.metadata.version.as_deref(), Some("1.0"));
        assert_eq!(v.metadata.classifiers.len(), 2);
        assert_eq!(v.metadata.keywords_list(), ["a", "b", "c"]);
        assert_eq!(
            v.metadata.project_urls_map(),
            [
                ("Homepage".to_owned(), "https://example.org".to_owned()),
                ("Source".to_owned(), "https://example.org/src".to_owned())
            ]
        );
        assert_eq!(v.metadata.requires_python.as_deref(), Some(">=3.9"));
    }

    #[test]
    fn wheel_upload_needs_pyversion() {
        let mut w = replace("filetype", "bdist_wheel");
        w.retain(|(k, _)| k != "pyversion");
        assert_eq!(
            msg(&w),
            "Invalid value for pyversion. Error: Python version is required for binary distribution uploads."
        );
        // Whitespace is a value to PyPI's check (`not pyversion.data`).
        w.push(("pyversion".into(), " ".into()));
        assert!(validate_upload_form(&w).is_ok());
        w.pop();
        w.push(("pyversion".into(), "py3".into()));
        let v = validate_upload_form(&w).unwrap();
        assert_eq!(
            (v.filetype, v.pyversion.as_str()),
            (FileType::BdistWheel, "py3")
        );
    }

    #[test]
    fn attestations_field_is_noticed() {
        // Any value counts (PyPI looks at the key); `UNKNOWN` is sanitised away first.
        assert!(!validate_upload_form(&base()).unwrap().attestations);
        for value in ["[]", "", "not json"] {
            let v = validate_upload_form(&with(&[("attestations", value)])).unwrap();
            assert!(v.attestations, "{value:?}");
        }
        let v = validate_upload_form(&with(&[("attestations", " UNKNOWN ")])).unwrap();
        assert!(!v.attestations);
    }

    #[test]
    fn sanitisation() {
        let s = sanitize_fields(&f(&[
            ("a", " UNKNOWN "),
            ("b", "x\0y"),
            ("c", "1"),
            ("c", "UNKNOWN"),
            ("d", "UNKNOWN"),
            ("d", "2"),
        ]));
        assert_eq!(s, f(&[("b", "x\\x00y"), ("d", "UNKNOWN"), ("d", "2")]));
        // An UNKNOWN summary is dropped rather than stored.
        let v =
            validate_upload_form(&with(&[("summary", "UNKNOWN"), ("license", "UNKNOWN")])).unwrap();
        assert_eq!((v.metadata.summary, v.metadata.license), (None, None));
        let v = validate_upload_form(&with(&[("summary", "a\0b")])).unwrap();
        assert_eq!(v.metadata.summary.as_deref(), Some("a\\x00b"));
    }

    #[test]
    fn protocol_version() {
        for bad in ["2", "3", "-1", "0", "dog", ""] {
            assert_eq!(
                msg(&replace("protocol_version", bad)),
                "Unknown protocol version.",
                "{bad}"
            );
        }
        assert!(validate_upload_form(&without(&["protocol_version"])).is_ok());
        assert!(check_protocol_version(&f(&[("protocol_version", "1")])).is_ok());
    }

    #[test]
    fn warehouse_post_data_cases() {
        // metadata_version errors.
        assert_eq!(
            msg(&without(&["metadata_version"])),
            format!("None is not a valid metadata version. {HELP}")
        );
        assert_eq!(
            msg(&replace("metadata_version", "-1")),
            format!("'-1' is not a valid metadata version. {HELP}")
        );
        assert_eq!(
            msg(&replace("metadata_version", "2.0")),
            format!("'2.0' is not a valid metadata version. {HELP}")
        );
        assert_eq!(
            msg(&replace("metadata_version", "2.6")),
            format!("'2.6' is not a valid metadata version. {HELP}")
        );
        // name errors.
        assert_eq!(
            msg(&f(&[("metadata_version", "1.2")])),
            format!("'' is an invalid value for Name. Error: This field is required. {HELP}")
        );
        assert_eq!(
            msg(&f(&[("metadata_version", "1.2"), ("name", "foo-")])),
            format!(
                "'foo-' is an invalid value for Name. Error: Start and end with a letter or numeral containing only ASCII numeric and '.', '_' and '-'. {HELP}"
            )
        );
        let long = format!("-{}", "a".repeat(70));
        assert_eq!(
            msg(&replace("name", &long)),
            format!(
                "'-{}...{}' is an invalid value for Name. Error: Start and end with a letter or numeral containing only ASCII numeric and '.', '_' and '-'. {HELP}",
                "a".repeat(29),
                "a".repeat(30)
            )
        );
        // version errors.
        assert_eq!(
            msg(&replace("version", "")),
            format!("'version' is a required field. {HELP}")
        );
        assert_eq!(
            msg(&without(&["version"])),
            format!("'version' is a required field. {HELP}")
        );
        assert_eq!(
            msg(&replace("version", "dog")),
            format!("'dog' is invalid for 'version'. {HELP}")
        );
        assert_eq!(
            msg(&replace("version", "1.0.dev.a1")),
            format!("'1.0.dev.a1' is invalid for 'version'. {HELP}")
        );
        assert_eq!(
            msg(&replace("version", "1.0+local")),
            "The use of local versions in '1.0+local' is not allowed. See https://packaging.python.org/specifications/version-specifiers/#local-version-identifiers for more information."
        );
        // filetype / pyversion errors.
        assert_eq!(
            msg(&without(&["filetype"])),
            "Invalid value for filetype. Error: This field is required."
        );
        assert_eq!(
            msg(&replace("filetype", "")),
            "Invalid value for filetype. Error: This field is required."
        );
        assert_eq!(
            msg(&replace("filetype", "bdist_wat")),
            "Invalid value for filetype. Error: Use a known file type."
        );
        assert_eq!(
            msg(&replace("filetype", "bdist_egg")),
            "Invalid value for filetype. Error: Use a known file type."
        );
        assert_eq!(
            msg(&replace("pyversion", "1.0")),
            "Invalid value for pyversion. Error: Use 'source' as Python version for an sdist."
        );
        assert!(validate_upload_form(&replace("pyversion", "")).is_ok());
        // digest errors.
        assert_eq!(
            msg(&without(&["sha256_digest"])),
            "Error: Include at least one message digest."
        );
        assert_eq!(
            msg(&replace("sha256_digest", "an invalid sha256 digest")),
            "Invalid value for sha256_digest. Error: Use a valid, hex-encoded, SHA256 message digest."
        );
        assert_eq!(
            msg(&with(&[("blake2_256_digest", "abc")])),
            "Invalid value for blake2_256_digest. Error: Use a valid, hex-encoded, BLAKE2 message digest."
        );
        let only_blake = without(&["sha256_digest"])
            .into_iter()
            .chain(f(&[("blake2_256_digest", SHA)]))
            .collect::<Vec<_>>();
        assert_eq!(
            validate_upload_form(&only_blake)
                .unwrap()
                .declared
                .blake2_256,
            Some(SHA.to_ascii_lowercase())
        );
        let only_md5 = without(&["sha256_digest"])
            .into_iter()
            .chain(f(&[("md5_digest", "a fake md5 digest")]))
            .collect::<Vec<_>>();
        assert!(validate_upload_form(&only_md5).is_ok());
        // summary errors.
        assert_eq!(
            msg(&with(&[("summary", &"A".repeat(513))])),
            format!("'summary' field must be 512 characters or less. {HELP}")
        );
        assert!(validate_upload_form(&with(&[("summary", &"A".repeat(512))])).is_ok());
        assert_eq!(
            msg(&with(&[("summary", "A\nB")])),
            format!("'summary' must be a single line. {HELP}")
        );
    }

    #[test]
    fn form_error_priority() {
        // Name beats everything in the form; the form beats metadata.
        let fields = f(&[
            ("name", "-x"),
            ("filetype", "nope"),
            ("sha256_digest", "zz"),
            ("version", "dog"),
        ]);
        assert!(msg(&fields).contains("is an invalid value for Name"));
        // Alphabetical among the remaining form fields: blake2 < filetype < sha256.
        let fields = f(&[
            ("name", "x"),
            ("filetype", "nope"),
            ("sha256_digest", "zz"),
            ("blake2_256_digest", "zz"),
        ]);
        assert!(msg(&fields).starts_with("Invalid value for blake2_256_digest."));
        let fields = f(&[("name", "x"), ("filetype", "nope"), ("sha256_digest", "zz")]);
        assert!(msg(&fields).starts_with("Invalid value for filetype."));
        // Field errors come before form-level errors.
        let fields = f(&[
            ("name", "x"),
            ("filetype", "sdist"),
            ("sha256_digest", "zz"),
        ]);
        assert!(msg(&fields).starts_with("Invalid value for sha256_digest."));
        // Metadata: metadata-version, then name, then version, then alphabetical.
        let fields = with(&[("summary", "a\nb"), ("home_page", "nope")]);
        let fields: Vec<_> = fields
            .into_iter()
            .map(|(k, v)| {
                if k == "version" {
                    (k, "dog".to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        assert_eq!(
            msg(&fields),
            format!("'dog' is invalid for 'version'. {HELP}")
        );
        assert_eq!(
            msg(&with(&[("summary", "a\nb"), ("requires_dist", "foo >=")])),
            format!("'foo >=' is invalid for 'requires-dist'. {HELP}")
        );
        // packaging's errors hide PyPI's own rules.
        assert_eq!(
            msg(&with(&[("summary", "a\nb"), ("classifiers", "Nope")])),
            format!("'summary' must be a single line. {HELP}")
        );
    }

    #[test]
    fn form_shape_errors() {
        assert_eq!(
            msg(&with(&[("summary", "a"), ("summary", "b")])),
            format!("'summary' has invalid data. {HELP}")
        );
        assert_eq!(
            msg(&with(&[("name", "Foo.Bar")])),
            format!("'name' has invalid data. {HELP}")
        );
        assert_eq!(
            msg(&with(&[("keywords", "a"), ("keywords", "b")])),
            format!("'keywords' has invalid data. {HELP}")
        );
        assert_eq!(
            msg(&with(&[
                ("project_urls", "A, https://a.org"),
                ("project_urls", "A, https://b.org")
            ])),
            format!("'project_urls' has invalid data. {HELP}")
        );
        // A single empty value is absent; uv always sends requires_python.
        let v = validate_upload_form(&with(&[("requires_python", ""), ("summary", "")])).unwrap();
        assert_eq!(
            (v.metadata.requires_python, v.metadata.summary),
            (None, None)
        );
    }

    #[test]
    fn metadata_field_rules() {
        let long_label = format!("{}, https://example.org", "L".repeat(33));
        let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
            (vec![("author_email", "not-an-email")], "'not-an-email' is not a valid email address: An email address must have an @-sign.".into()),
            (vec![("maintainer_email", "Jo <jo@localhost>")], "'jo@localhost' is not a valid email address: The part after the @-sign is not valid. It should have a period.".into()),
            (vec![("author_email", "a b@example.org")], "'a b@example.org' is not a valid email address: The email address contains invalid characters before the @-sign: ' '.".into()),
            (vec![("classifiers", "Fake :: Classifier")], "'Fake :: Classifier' is not a valid classifier.".into()),
            (vec![("home_page", "ftp://example.org")], "'ftp://example.org' is not a valid url.".into()),
            (vec![("download_url", "https://")], "'https://' is not a valid url.".into()),
            (vec![("project_urls", ", https://example.org")], "Must have a label.".into()),
            (vec![("project_urls", "Homepage")], "Must have a URL.".into()),
            (vec![("project_urls", long_label.as_str())], format!("'{}' must be 32 characters or less.", "L".repeat(33))),
            (vec![("project_urls", "Home, javascript:alert(1)")], "'javascript:alert(1)' is not a valid url.".into()),
            (vec![("requires_dist", "foo @ https://example.org/foo.whl")], "Can't have direct dependency: foo @ https://example.org/foo.whl.".into()),
            (vec![("requires_dist", "Foo[b,a] @ file:///x ; python_version > \"3\"")], "Can't have direct dependency: Foo[a,b] @ file:///x ; python_version > \"3\".".into()),
            (vec![("requires_dist", "foo@https://x.org/a.whl")], "Can't have direct dependency: foo @ https://x.org/a.whl.".into()),
            (vec![("provides_dist", "foo @ https://example.org/foo.whl")], "Can't have direct dependency: 'foo @ https://example.org/foo.whl'.".into()),
            (vec![("obsoletes_dist", "foo @ https://example.org/foo.whl")], "Can't have direct dependency: 'foo @ https://example.org/foo.whl'.".into()),
            (vec![("requires_python", ">=3.x")], "'>=3.x' is invalid for 'requires-python'.".into()),
            (vec![("description_content_type", "text/foo")], "'description-content-type' must be one of ['text/plain', 'text/x-rst', 'text/markdown'], not 'text/foo'.".into()),
            (vec![("description_content_type", "text/markdown; charset=latin1")], "'description-content-type' can only specify the UTF-8 charset, not 'latin1'.".into()),
            (vec![("description_content_type", "text/markdown; variant=X")], "valid Markdown variants for 'description-content-type' are ['GFM', 'CommonMark'], not 'X'.".into()),
            (vec![("provides_extra", "a b")], "'a b' is invalid for 'provides-extra'.".into()),
            (vec![("dynamic", "Name")], "dynamic introduced in metadata version 2.2, not 2.1.".into()),
            (vec![("license_expression", "MIT")], "license-expression introduced in metadata version 2.4, not 2.1.".into()),
        ];
        for (extra, expected) in cases {
            assert_eq!(
                msg(&with(&extra)),
                format!("{expected} {HELP}"),
                "{extra:?}"
            );
        }
    }

    fn v24(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v = replace("metadata_version", "2.5");
        v.extend(f(extra));
        v
    }

    #[test]
    fn modern_metadata_rules() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("dynamic", "Name")],
                "'name' is not allowed as a dynamic field.",
            ),
            (
                vec![("dynamic", "Blah")],
                "'blah' is not a valid dynamic field.",
            ),
            (
                vec![("dynamic", "Dynamic")],
                "Dynamic field 'dynamic' is not a valid dynamic field.",
            ),
            (
                vec![("license_expression", "MIT OR")],
                "'MIT OR' is invalid for 'license-expression'.",
            ),
            (
                vec![("license", "MIT"), ("license_expression", "MIT")],
                "License is deprecated when License-Expression is present. Only License-Expression should be present.",
            ),
            (
                vec![("license_file", "../x")],
                "'../x' is invalid for 'license-file', parent directory indicators are not allowed.",
            ),
            (
                vec![("license_file", "LICENSE*")],
                "'LICENSE*' is invalid for 'license-file', paths must be resolved.",
            ),
            (
                vec![("license_file", "/LICENSE")],
                "'/LICENSE' is invalid for 'license-file', paths must be relative.",
            ),
            (
                vec![("license_file", "C:LICENSE")],
                "'C:LICENSE' is invalid for 'license-file', paths must be relative.",
            ),
            (
                vec![("license_file", "a\\LICENSE")],
                "'a\\\\LICENSE' is invalid for 'license-file', paths must use '/' delimiter.",
            ),
            (
                vec![("import_name", "a.1x")],
                "'a.1x' is invalid for 'import-name'; '1x' is not a valid identifier.",
            ),
            (
                vec![("import_namespace", "class")],
                "'class' is invalid for 'import-namespace'; 'class' is a keyword.",
            ),
            (
                vec![("import_name", "a; public")],
                "'a; public' is invalid for 'import-name'; the only valid option is 'private'.",
            ),
        ];
        for (extra, expected) in cases {
            assert_eq!(msg(&v24(&extra)), format!("{expected} {HELP}"), "{extra:?}");
        }
        let ok = v24(&[
            ("dynamic", "Requires-Dist"),
            ("license_expression", "mit OR Apache-2.0"),
            ("license_file", "LICENSES/MIT.txt"),
            ("import_name", "foo.bar"),
            ("import_name", "_foo ; private"),
            (
                "description_content_type",
                "text/markdown; charset=UTF-8; variant=CommonMark",
            ),
        ]);
        assert!(validate_upload_form(&ok).is_ok());
    }

    #[test]
    fn deprecated_classifiers() {
        let (dep, repl) = crate::classifiers_data::DEPRECATED_CLASSIFIERS
            .iter()
            .find(|(_, r)| !r.is_empty())
            .copied()
            .unwrap_or(("", &[]));
        let expected = format!(
            "The classifier {} has been deprecated, use one of {} instead. {HELP}",
            repr(dep),
            crate::pyrepr::repr_list(repl)
        );
        assert_eq!(msg(&with(&[("classifiers", dep)])), expected);
        if let Some((dep, _)) = crate::classifiers_data::DEPRECATED_CLASSIFIERS
            .iter()
            .find(|(_, r)| r.is_empty())
        {
            assert_eq!(
                msg(&with(&[("classifiers", dep)])),
                format!("The classifier {} has been deprecated. {HELP}", repr(dep))
            );
        }
    }

    #[test]
    fn old_metadata_versions_gate_fields() {
        let mut v = replace("metadata_version", "1.0");
        v.push(("requires_dist".into(), "foo".into()));
        assert_eq!(
            msg(&v),
            format!("requires-dist introduced in metadata version 1.2, not 1.0. {HELP}")
        );
    }

    proptest! {
        #[test]
        fn never_panics(fields in proptest::collection::vec(
            (prop_oneof![
                Just("name".to_owned()), Just("version".to_owned()), Just("metadata_version".to_owned()),
                Just("filetype".to_owned()), Just("pyversion".to_owned()), Just("sha256_digest".to_owned()),
                Just("requires_dist".to_owned()), Just("project_urls".to_owned()), Just("author_email".to_owned()),
                Just("summary".to_owned()), Just("license_expression".to_owned()), Just("dynamic".to_owned()),
                Just("classifiers".to_owned()), Just("home_page".to_owned()), "[a-z_]{1,12}",
            ], "\\PC{0,40}"),
            0..12,
        )) {
            let _ = validate_upload_form(&fields);
            let mut full = base();
            full.extend(fields);
            let _ = validate_upload_form(&full);
        }
    }
}
