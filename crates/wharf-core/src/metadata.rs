//! Release metadata and its validation: the rules of `packaging.metadata.Metadata.from_raw`
//! followed by Warehouse's own, with their texts and PyPI's error priority.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::classifiers::{deprecated_replacements, is_known_classifier};
use crate::filename::is_identifier;
use crate::name::is_valid_project_name;
use crate::pyrepr::{repr, repr_list};
use crate::refusal::Refusal;
use crate::spdx::canonicalize_license_expression;
use crate::version::Version;

/// Link appended to metadata rejections.
pub const CORE_METADATA_HELP: &str =
    "See https://packaging.python.org/specifications/core-metadata for more information.";

/// Core metadata of a release. Single-use fields are `Option<String>`, multiple-use fields
/// `Vec<String>`; field names are the upload form's (spec a.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReleaseMetadata {
    /// `Metadata-Version`.
    pub metadata_version: Option<String>,
    /// `Name`, as sent.
    pub name: Option<String>,
    /// `Version` (normalized once validated).
    pub version: Option<String>,
    /// `Summary`.
    pub summary: Option<String>,
    /// `Description` (or the message body).
    pub description: Option<String>,
    /// `Description-Content-Type`.
    pub description_content_type: Option<String>,
    /// `Keywords`, one comma-separated string.
    pub keywords: Option<String>,
    /// `Home-page`.
    pub home_page: Option<String>,
    /// `Download-URL`.
    pub download_url: Option<String>,
    /// `Author`.
    pub author: Option<String>,
    /// `Author-email`.
    pub author_email: Option<String>,
    /// `Maintainer`.
    pub maintainer: Option<String>,
    /// `Maintainer-email`.
    pub maintainer_email: Option<String>,
    /// `License`.
    pub license: Option<String>,
    /// `License-Expression`.
    pub license_expression: Option<String>,
    /// `License-File` entries.
    pub license_file: Vec<String>,
    /// `Classifier` entries.
    pub classifiers: Vec<String>,
    /// `Platform` entries.
    pub platform: Vec<String>,
    /// `Supported-Platform` entries.
    pub supported_platform: Vec<String>,
    /// `Requires-Dist` entries.
    pub requires_dist: Vec<String>,
    /// `Provides-Dist` entries.
    pub provides_dist: Vec<String>,
    /// `Obsoletes-Dist` entries.
    pub obsoletes_dist: Vec<String>,
    /// `Requires-External` entries.
    pub requires_external: Vec<String>,
    /// `Requires` entries (legacy).
    pub requires: Vec<String>,
    /// `Provides` entries (legacy).
    pub provides: Vec<String>,
    /// `Obsoletes` entries (legacy).
    pub obsoletes: Vec<String>,
    /// `Provides-Extra` entries.
    pub provides_extra: Vec<String>,
    /// `Dynamic` entries.
    pub dynamic: Vec<String>,
    /// `Requires-Python`.
    pub requires_python: Option<String>,
    /// `Project-URL` entries, each `"Label, URL"`.
    pub project_urls: Vec<String>,
    /// `Import-Name` entries.
    pub import_name: Vec<String>,
    /// `Import-Namespace` entries.
    pub import_namespace: Vec<String>,
}

/// Splits one `"Label, URL"` entry at the first comma, both halves stripped.
pub(crate) fn split_project_url(entry: &str) -> (String, String) {
    match entry.split_once(',') {
        Some((label, url)) => (label.trim().to_owned(), url.trim().to_owned()),
        None => (entry.trim().to_owned(), String::new()),
    }
}

impl ReleaseMetadata {
    /// Returns the project URLs as (label, URL) pairs, in order.
    pub fn project_urls_map(&self) -> Vec<(String, String)> {
        self.project_urls
            .iter()
            .map(|e| split_project_url(e))
            .collect()
    }

    /// Returns the keywords split at commas and stripped.
    pub fn keywords_list(&self) -> Vec<String> {
        self.keywords
            .as_deref()
            .map(|k| k.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default()
    }
}

/// A PEP 508 URL that accepts anything after `@`, so every `name @ …` counts as a direct
/// reference (as in `packaging`), whatever the URL looks like.
#[derive(Debug, Clone)]
struct AnyUrl(String);

impl std::fmt::Display for AnyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl pep508_rs::Pep508Url for AnyUrl {
    type Err = std::convert::Infallible;

    fn parse_url(url: &str, _working_dir: Option<&std::path::Path>) -> Result<Self, Self::Err> {
        Ok(AnyUrl(url.to_owned()))
    }
}

/// A parsed PEP 508 requirement, reduced to what the upload rules need.
#[derive(Debug)]
pub(crate) struct ParsedRequirement {
    /// `str(Requirement)` as `packaging` prints it, when it is a direct reference.
    pub(crate) direct: Option<String>,
}

/// Checks the `name [extras]` prefix that `pep508_rs` would otherwise `expect()` on (a name
/// or extra ending in `-`, `_` or `.` makes it panic).
fn precheck_requirement(s: &str) -> Result<(), String> {
    let s = s.trim_start();
    let name_len = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(s.len());
    let name = &s[..name_len];
    if !name.is_empty() && !is_valid_project_name(name) {
        return Err(format!("Invalid package name: {}", repr(name)));
    }
    let rest = s[name_len..].trim_start();
    if marker_has_non_ascii(rest) {
        return Err(format!("Invalid requirement: {}", repr(s)));
    }
    // An unclosed `[` still has its extras validated by pep508_rs (found by fuzzing).
    if let Some(extras) = rest
        .strip_prefix('[')
        .map(|r| r.split_once(']').map_or(r, |(e, _)| e))
    {
        for extra in extras.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let token_len = extra
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                .unwrap_or(extra.len());
            let token = &extra[..token_len];
            if !token.is_empty() && !is_valid_project_name(token) {
                return Err(format!("Invalid extra name: {}", repr(token)));
            }
        }
    }
    Ok(())
}

/// Whether the environment marker (after `;`; after ` ;` once a URL has begun) holds a
/// non-ASCII character. `pep508_rs` measures the token after a marker expression in
/// characters and slices by bytes, so a non-ASCII character there panics (found by fuzzing);
/// which token that is depends on how the parser recovers from bad quoting, so any non-ASCII
/// marker is refused. Deliberately stricter than `packaging`, which accepts non-ASCII inside
/// a marker's quoted strings: no environment marker value is non-ASCII.
fn marker_has_non_ascii(after_name: &str) -> bool {
    let url_start = after_name.find('@');
    let marker_start = after_name.char_indices().find_map(|(at, c)| {
        let in_url = url_start.is_some_and(|url| url < at);
        let spaced = after_name[..at].ends_with(char::is_whitespace);
        (c == ';' && (!in_url || spaced)).then_some(at + 1)
    });
    marker_start.is_some_and(|start| !after_name[start..].is_ascii())
}

/// Parses a PEP 508 requirement; the error is the parser's message.
pub(crate) fn parse_requirement(s: &str) -> Result<ParsedRequirement, String> {
    precheck_requirement(s)?;
    let parsed = std::panic::catch_unwind(|| pep508_rs::Requirement::<AnyUrl>::from_str(s))
        .map_err(|_| format!("Invalid requirement: {}", repr(s)))?;
    let req = parsed.map_err(|e| e.message.to_string())?;
    let direct = match &req.version_or_url {
        Some(pep508_rs::VersionOrUrl::Url(url)) => {
            // packaging keeps the name as written and sorts the extras.
            let name: String = s
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            let mut out = name;
            let mut extras: Vec<String> = req.extras.iter().map(ToString::to_string).collect();
            extras.sort();
            if !extras.is_empty() {
                out.push_str(&format!("[{}]", extras.join(",")));
            }
            out.push_str(&format!(" @ {url}"));
            // The marker as written (pep508_rs would rewrite it).
            let after_url = s
                .find(url.0.as_str())
                .map(|i| &s[i + url.0.len()..])
                .unwrap_or_default();
            let marker = after_url.trim().trim_start_matches(';').trim();
            if !marker.is_empty() && !req.marker.is_true() {
                out.push_str(&format!(" ; {marker}"));
            }
            Some(out)
        }
        _ => None,
    };
    Ok(ParsedRequirement { direct })
}

/// Metadata versions `packaging` knows.
const PACKAGING_METADATA_VERSIONS: [&str; 9] = [
    "1.0", "1.1", "1.2", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6",
];
/// Metadata versions PyPI accepts (2.0 never existed; 2.6 not yet enabled).
pub const SUPPORTED_METADATA_VERSIONS: [&str; 8] =
    ["1.0", "1.1", "1.2", "2.1", "2.2", "2.3", "2.4", "2.5"];

/// Every core-metadata field (email spelling) `packaging` knows.
const EMAIL_FIELDS: [&str; 32] = [
    "author",
    "author-email",
    "classifier",
    "description",
    "description-content-type",
    "download-url",
    "dynamic",
    "home-page",
    "import-name",
    "import-namespace",
    "keywords",
    "license",
    "license-expression",
    "license-file",
    "maintainer",
    "maintainer-email",
    "metadata-version",
    "name",
    "obsoletes",
    "obsoletes-dist",
    "platform",
    "project-url",
    "provides",
    "provides-dist",
    "provides-extra",
    "requires",
    "requires-dist",
    "requires-external",
    "requires-python",
    "summary",
    "supported-platform",
    "version",
];

/// Fields PyPI allows in `Dynamic` (lower-cased).
const DYNAMIC_FIELDS: [&str; 28] = [
    "platform",
    "supported-platform",
    "summary",
    "description",
    "description-content-type",
    "keywords",
    "home-page",
    "download-url",
    "author",
    "author-email",
    "maintainer",
    "maintainer-email",
    "license",
    "license-expression",
    "license-file",
    "classifier",
    "requires-dist",
    "requires-python",
    "requires-external",
    "project-url",
    "provides-extra",
    "provides-dist",
    "obsoletes-dist",
    "requires",
    "provides",
    "obsoletes",
    "import-name",
    "import-namespace",
];

const PY_KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// One validation failure: the field (email spelling) and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) message: String,
}

fn err(field: &str, message: String) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message,
    }
}

/// Picks the error PyPI reports: metadata-version, then name, then version, then the
/// alphabetically first field; the first error of that field.
pub(crate) fn pick(errors: &[FieldError]) -> Option<&FieldError> {
    for key in ["metadata-version", "name", "version"] {
        if let Some(e) = errors.iter().find(|e| e.field == key) {
            return Some(e);
        }
    }
    let first = errors.iter().map(|e| e.field.as_str()).min()?;
    errors.iter().find(|e| e.field == first)
}

/// Formats a metadata error as PyPI's reason phrase.
pub(crate) fn metadata_rejection(e: &FieldError) -> Refusal {
    if e.message.contains("/specifications/version-specifiers/") {
        return Refusal::bad_request(e.message.clone());
    }
    let dot = if e.message.ends_with('.') { "" } else { "." };
    Refusal::bad_request(format!("{}{dot} {CORE_METADATA_HELP}", e.message))
}

fn version_index(v: &str) -> Option<usize> {
    PACKAGING_METADATA_VERSIONS.iter().position(|x| *x == v)
}

/// Line boundaries `packaging` refuses in a summary.
fn has_line_boundary(s: &str) -> bool {
    s.chars().any(|c| {
        matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        )
    })
}

fn check_content_type(value: &str) -> Result<(), String> {
    const FIELD: &str = "'description-content-type'";
    let mut parts = value.split(';');
    let main = parts.next().unwrap_or_default().trim().to_lowercase();
    let allowed = ["text/plain", "text/x-rst", "text/markdown"];
    if !allowed.contains(&main.as_str()) {
        return Err(format!(
            "{FIELD} must be one of {}, not {}",
            repr_list(&allowed),
            repr(value)
        ));
    }
    let mut charset = "UTF-8".to_owned();
    let mut variant = "GFM".to_owned();
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_owned();
        match k.trim().to_lowercase().as_str() {
            "charset" => charset = v,
            "variant" => variant = v,
            _ => {}
        }
    }
    if charset.to_lowercase() != "utf-8" {
        return Err(format!(
            "{FIELD} can only specify the UTF-8 charset, not {}",
            repr(&charset)
        ));
    }
    if main == "text/markdown" && variant != "GFM" && variant != "CommonMark" {
        return Err(format!(
            "valid Markdown variants for {FIELD} are {}, not {}",
            repr_list(&["GFM", "CommonMark"]),
            repr(&variant)
        ));
    }
    Ok(())
}

fn check_license_file(path: &str) -> Result<(), String> {
    let p = repr(path);
    let has_drive = {
        let b = path.as_bytes();
        (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':') || path.starts_with("\\\\")
    };
    if path.contains("..") {
        Err(format!(
            "{p} is invalid for 'license-file', parent directory indicators are not allowed"
        ))
    } else if path.contains('*') {
        Err(format!(
            "{p} is invalid for 'license-file', paths must be resolved"
        ))
    } else if path.starts_with('/') || has_drive {
        Err(format!(
            "{p} is invalid for 'license-file', paths must be relative"
        ))
    } else if path.contains('\\') {
        Err(format!(
            "{p} is invalid for 'license-file', paths must use '/' delimiter"
        ))
    } else {
        Ok(())
    }
}

fn check_import_name(field: &str, entry: &str) -> Result<(), String> {
    let (name, private) = match entry.split_once(';') {
        Some((n, p)) => (n.trim_end(), Some(p)),
        None => (entry.trim_end(), None),
    };
    for ident in name.split('.') {
        if !is_identifier(ident) {
            return Err(format!(
                "{} is invalid for '{field}'; {} is not a valid identifier",
                repr(name),
                repr(ident)
            ));
        }
        if PY_KEYWORDS.contains(&ident) {
            return Err(format!(
                "{} is invalid for '{field}'; {} is a keyword",
                repr(name),
                repr(ident)
            ));
        }
    }
    if private.is_some_and(|p| p.trim_start() != "private") {
        return Err(format!(
            "{} is invalid for '{field}'; the only valid option is 'private'",
            repr(entry)
        ));
    }
    Ok(())
}

/// Returns the (email name, added-in version, present) triple of every optional field.
fn present_fields(m: &ReleaseMetadata) -> Vec<(&'static str, &'static str)> {
    let singles: [(&str, &str, bool); 13] = [
        ("summary", "1.0", m.summary.is_some()),
        ("description", "1.0", m.description.is_some()),
        (
            "description-content-type",
            "2.1",
            m.description_content_type.is_some(),
        ),
        ("keywords", "1.0", m.keywords.is_some()),
        ("home-page", "1.0", m.home_page.is_some()),
        ("download-url", "1.1", m.download_url.is_some()),
        ("author", "1.0", m.author.is_some()),
        ("author-email", "1.0", m.author_email.is_some()),
        ("maintainer", "1.2", m.maintainer.is_some()),
        ("maintainer-email", "1.2", m.maintainer_email.is_some()),
        ("license", "1.0", m.license.is_some()),
        ("license-expression", "2.4", m.license_expression.is_some()),
        ("requires-python", "1.2", m.requires_python.is_some()),
    ];
    let lists: [(&str, &str, bool); 17] = [
        ("license-file", "2.4", !m.license_file.is_empty()),
        ("classifier", "1.1", !m.classifiers.is_empty()),
        ("platform", "1.0", !m.platform.is_empty()),
        (
            "supported-platform",
            "1.1",
            !m.supported_platform.is_empty(),
        ),
        ("requires-dist", "1.2", !m.requires_dist.is_empty()),
        ("provides-dist", "1.2", !m.provides_dist.is_empty()),
        ("obsoletes-dist", "1.2", !m.obsoletes_dist.is_empty()),
        ("requires-external", "1.2", !m.requires_external.is_empty()),
        ("requires", "1.1", !m.requires.is_empty()),
        ("provides", "1.1", !m.provides.is_empty()),
        ("obsoletes", "1.1", !m.obsoletes.is_empty()),
        ("provides-extra", "2.1", !m.provides_extra.is_empty()),
        ("dynamic", "2.2", !m.dynamic.is_empty()),
        ("project-url", "1.2", !m.project_urls.is_empty()),
        ("import-name", "2.5", !m.import_name.is_empty()),
        ("import-namespace", "2.5", !m.import_namespace.is_empty()),
        ("version", "1.0", true),
    ];
    singles
        .into_iter()
        .chain(lists)
        .chain([("name", "1.0", true)])
        .filter(|(_, _, present)| *present)
        .map(|(f, added, _)| (f, added))
        .collect()
}

/// Runs `packaging.metadata.Metadata.from_raw` validation; every failing field yields one error.
pub(crate) fn packaging_errors(m: &ReleaseMetadata) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mv_index = match m.metadata_version.as_deref() {
        None => {
            errors.push(err(
                "metadata-version",
                "None is not a valid metadata version".into(),
            ));
            None
        }
        Some(v) => {
            let idx = version_index(v);
            if idx.is_none() {
                errors.push(err(
                    "metadata-version",
                    format!("{} is not a valid metadata version", repr(v)),
                ));
            }
            idx
        }
    };
    for (field, added) in present_fields(m) {
        if let (Some(mv), Some(added_idx)) = (mv_index, version_index(added))
            && added_idx > mv
        {
            let mv_str = PACKAGING_METADATA_VERSIONS
                .get(mv)
                .copied()
                .unwrap_or_default();
            errors.push(err(
                field,
                format!("{field} introduced in metadata version {added}, not {mv_str}"),
            ));
            continue;
        }
        if let Err(message) = check_packaging_field(m, field) {
            errors.push(err(field, message));
        }
    }
    errors
}

fn check_packaging_field(m: &ReleaseMetadata, field: &str) -> Result<(), String> {
    let each = |values: &[String],
                check: &dyn Fn(&str) -> Result<(), String>|
     -> Result<(), String> { values.iter().try_for_each(|v| check(v)) };
    match field {
        "name" => match m.name.as_deref() {
            None | Some("") => Err("'name' is a required field".into()),
            Some(n) if !is_valid_project_name(n) => {
                Err(format!("{} is invalid for 'name'", repr(n)))
            }
            Some(_) => Ok(()),
        },
        "version" => match m.version.as_deref() {
            None | Some("") => Err("'version' is a required field".into()),
            Some(v) => Version::parse(v)
                .map(drop)
                .map_err(|_| format!("{} is invalid for 'version'", repr(v))),
        },
        "summary" => match m.summary.as_deref() {
            Some(s) if has_line_boundary(s) => Err("'summary' must be a single line".into()),
            _ => Ok(()),
        },
        "description-content-type" => m
            .description_content_type
            .as_deref()
            .map_or(Ok(()), check_content_type),
        "dynamic" => each(&m.dynamic, &|d| {
            let d = d.to_lowercase();
            if matches!(d.as_str(), "name" | "version" | "metadata-version") {
                Err(format!("{} is not allowed as a dynamic field", repr(&d)))
            } else if !EMAIL_FIELDS.contains(&d.as_str()) {
                Err(format!("{} is not a valid dynamic field", repr(&d)))
            } else {
                Ok(())
            }
        }),
        "provides-extra" => each(&m.provides_extra, &|e| {
            if is_valid_project_name(e) {
                Ok(())
            } else {
                Err(format!("{} is invalid for 'provides-extra'", repr(e)))
            }
        }),
        "requires-python" => match m.requires_python.as_deref() {
            Some(s) => pep440_rs::VersionSpecifiers::from_str(s)
                .map(drop)
                .map_err(|_| format!("{} is invalid for 'requires-python'", repr(s))),
            None => Ok(()),
        },
        "requires-dist" => each(&m.requires_dist, &|r| {
            parse_requirement(r)
                .map(drop)
                .map_err(|_| format!("{} is invalid for 'requires-dist'", repr(r)))
        }),
        "license-expression" => match m.license_expression.as_deref() {
            Some(s) => canonicalize_license_expression(s)
                .map(drop)
                .map_err(|_| format!("{} is invalid for 'license-expression'", repr(s))),
            None => Ok(()),
        },
        "license-file" => each(&m.license_file, &check_license_file),
        "import-name" => each(&m.import_name, &|n| check_import_name("import-name", n)),
        "import-namespace" => each(&m.import_namespace, &|n| {
            check_import_name("import-namespace", n)
        }),
        _ => Ok(()),
    }
}

/// Extracts the address the way `email.utils.parseaddr` would; `None` when it would give up
/// (several addresses, unbalanced brackets) or find nothing.
fn parse_address(value: &str) -> Option<String> {
    let mut depth_angle = 0i32;
    let mut in_quote = false;
    for c in value.chars() {
        match c {
            '"' => in_quote = !in_quote,
            '<' if !in_quote => depth_angle += 1,
            '>' if !in_quote => depth_angle -= 1,
            ',' if !in_quote && depth_angle == 0 => return None,
            _ => {}
        }
    }
    let addr = match (value.rfind('<'), value.rfind('>')) {
        (Some(l), Some(r)) if l < r => value[l + 1..r].trim().to_owned(),
        (None, None) => {
            // Drop a trailing "(comment)".
            let v = match (value.find('('), value.rfind(')')) {
                (Some(l), Some(r)) if l < r => format!("{}{}", &value[..l], &value[r + 1..]),
                _ => value.to_owned(),
            };
            v.trim().to_owned()
        }
        _ => return None,
    };
    (!addr.is_empty()).then_some(addr)
}

/// Validates an address as `email_validator.validate_email` (no deliverability) would, with
/// its messages.
fn validate_email(addr: &str) -> Result<(), String> {
    let ats = addr.matches('@').count();
    if ats == 0 {
        return Err("An email address must have an @-sign.".into());
    }
    let (local, domain) = addr.rsplit_once('@').unwrap_or_default();
    if ats > 1 && !(local.starts_with('"') && local.ends_with('"')) {
        return Err("The email address is not valid. It must have exactly one @-sign.".into());
    }
    if local.is_empty() {
        return Err("There must be something before the @-sign.".into());
    }
    if domain.is_empty() {
        return Err("There must be something after the @-sign.".into());
    }
    if !(local.starts_with('"') && local.ends_with('"') && local.len() >= 2) {
        let bad: String = local
            .chars()
            .filter(|c| {
                !(c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(*c)) || c.is_whitespace()
            })
            .collect();
        if !bad.is_empty() {
            let mut uniq: Vec<char> = bad.chars().collect();
            uniq.sort_unstable();
            uniq.dedup();
            let shown: String = uniq.into_iter().collect();
            return Err(format!(
                "The email address contains invalid characters before the @-sign: {}.",
                repr(&shown)
            ));
        }
        if local.starts_with('.') {
            return Err("An email address cannot start with a period.".into());
        }
        if local.ends_with('.') {
            return Err(
                "An email address cannot have a period immediately before the @-sign.".into(),
            );
        }
        if local.contains("..") {
            return Err("An email address cannot have two periods in a row.".into());
        }
    }
    if domain.starts_with('[') && domain.ends_with(']') {
        return Ok(());
    }
    let bad: String = domain
        .chars()
        .filter(|c| !(c.is_alphanumeric() || *c == '-' || *c == '.'))
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "The part after the @-sign contains invalid characters: {}.",
            repr(&bad)
        ));
    }
    if domain.starts_with('.') {
        return Err("An email address cannot have a period immediately after the @-sign.".into());
    }
    if domain.ends_with('.') {
        return Err("An email address cannot end with a period.".into());
    }
    if domain.contains("..") {
        return Err("An email address cannot have two periods in a row.".into());
    }
    if domain
        .split('.')
        .any(|l| l.starts_with('-') || l.ends_with('-'))
    {
        return Err("An email address cannot have a hyphen immediately after the @-sign or before a period.".into());
    }
    if !domain.contains('.') {
        return Err("The part after the @-sign is not valid. It should have a period.".into());
    }
    if domain
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(
            "The part after the @-sign is not valid. It is not within a valid top-level domain."
                .into(),
        );
    }
    Ok(())
}

/// Tells whether `url` is an `http`/`https` URL with a host and no whitespace or control
/// characters.
pub fn is_valid_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return false;
    };
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "<>\"{}|\\^`".contains(c))
    {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
        match stripped.split_once(']') {
            Some((h, p)) => {
                if h.is_empty()
                    || !h
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
                {
                    return false;
                }
                (h, p.strip_prefix(':'))
            }
            None => return false,
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~%!$&'()*+,;=:".contains(c));
    let port_ok = port.is_none_or(|p| p.chars().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

/// Runs Warehouse's own metadata rules (after `packaging`'s passed).
pub(crate) fn warehouse_errors(m: &ReleaseMetadata) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(mv) = m.metadata_version.as_deref()
        && !SUPPORTED_METADATA_VERSIONS.contains(&mv)
    {
        errors.push(err(
            "metadata-version",
            format!("{} is not a valid metadata version", repr(mv)),
        ));
    }
    if let Some(v) = m.version.as_deref().and_then(|v| Version::parse(v).ok())
        && v.is_local()
    {
        errors.push(err(
                "version",
                format!(
                    "The use of local versions in {} is not allowed. See \
                     https://packaging.python.org/specifications/version-specifiers/#local-version-identifiers \
                     for more information.",
                    repr(&v.normalized())
                ),
            ));
    }
    if let Some(s) = &m.summary
        && s.chars().count() > 512
    {
        errors.push(err(
            "summary",
            "'summary' field must be 512 characters or less.".into(),
        ));
    }
    for (field, value) in [
        ("author-email", &m.author_email),
        ("maintainer-email", &m.maintainer_email),
    ] {
        if let Some(address) = value.as_deref().and_then(parse_address)
            && let Err(reason) = validate_email(&address)
        {
            errors.push(err(
                field,
                format!("{} is not a valid email address: {reason}", repr(&address)),
            ));
        }
    }
    let mut classifiers: Vec<&String> = m.classifiers.iter().collect();
    classifiers.sort();
    classifiers.dedup();
    for c in classifiers.iter().filter(|c| !is_known_classifier(c)) {
        errors.push(err(
            "classifier",
            format!("{} is not a valid classifier.", repr(c)),
        ));
    }
    for c in &classifiers {
        match deprecated_replacements(c) {
            Some([]) => errors.push(err(
                "classifier",
                format!("The classifier {} has been deprecated.", repr(c)),
            )),
            Some(repl) => errors.push(err(
                "classifier",
                format!(
                    "The classifier {} has been deprecated, use one of {} instead.",
                    repr(c),
                    repr_list(repl)
                ),
            )),
            None => {}
        }
    }
    for (field, value) in [
        ("home-page", &m.home_page),
        ("download-url", &m.download_url),
    ] {
        if let Some(url) = value
            && !is_valid_url(url)
        {
            errors.push(err(field, format!("{} is not a valid url.", repr(url))));
        }
    }
    for (label, url) in m.project_urls_map() {
        if label.is_empty() {
            errors.push(err("project-url", "Must have a label".into()));
        } else if label.chars().count() > 32 {
            errors.push(err(
                "project-url",
                format!("{} must be 32 characters or less.", repr(&label)),
            ));
        } else if url.is_empty() {
            errors.push(err("project-url", "Must have a URL".into()));
        } else if !is_valid_url(&url) {
            errors.push(err(
                "project-url",
                format!("{} is not a valid url", repr(&url)),
            ));
        }
    }
    for (field, values) in [
        ("provides-dist", &m.provides_dist),
        ("obsoletes-dist", &m.obsoletes_dist),
    ] {
        for r in values {
            match parse_requirement(r) {
                Err(e) => errors.push(err(field, format!("{} is invalid: {e}", repr(r)))),
                Ok(p) if p.direct.is_some() => {
                    errors.push(err(
                        field,
                        format!("Can't have direct dependency: {}", repr(r)),
                    ));
                }
                Ok(_) => {}
            }
        }
    }
    for r in &m.requires_dist {
        if let Ok(ParsedRequirement {
            direct: Some(shown),
        }) = parse_requirement(r)
        {
            errors.push(err(
                "requires-dist",
                format!("Can't have direct dependency: {shown}"),
            ));
        }
    }
    for d in &m.dynamic {
        let d = d.to_lowercase();
        if !DYNAMIC_FIELDS.contains(&d.as_str()) {
            errors.push(err(
                "dynamic",
                format!("Dynamic field {} is not a valid dynamic field.", repr(&d)),
            ));
        }
    }
    if m.license.as_deref().is_some_and(|l| !l.is_empty())
        && m.license_expression
            .as_deref()
            .is_some_and(|l| !l.is_empty())
    {
        errors.push(err(
            "license",
            "License is deprecated when License-Expression is present. Only License-Expression should be present."
                .into(),
        ));
    }
    errors
}

/// Validates release metadata with `packaging`'s rules then PyPI's, returning PyPI's reason
/// phrase for the first error by PyPI's priority.
pub fn validate_metadata(m: &ReleaseMetadata) -> Result<(), Refusal> {
    for phase in [packaging_errors(m), warehouse_errors(m)] {
        if let Some(e) = pick(&phase) {
            return Err(metadata_rejection(e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fe(field: &str, message: &str) -> FieldError {
        err(field, message.to_owned())
    }

    #[test]
    fn priority() {
        let errors = [
            fe("summary", "s"),
            fe("classifier", "c1"),
            fe("classifier", "c2"),
            fe("version", "v"),
        ];
        assert_eq!(pick(&errors).map(|e| e.message.as_str()), Some("v"));
        assert_eq!(pick(&errors[..3]).map(|e| e.message.as_str()), Some("c1"));
        let errors = [fe("name", "n"), fe("metadata-version", "m")];
        assert_eq!(pick(&errors).map(|e| e.message.as_str()), Some("m"));
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn rejection_text() {
        let r = metadata_rejection(&fe("x", "no period"));
        assert_eq!(r.message, format!("no period. {CORE_METADATA_HELP}"));
        let r = metadata_rejection(&fe("x", "period."));
        assert_eq!(r.message, format!("period. {CORE_METADATA_HELP}"));
    }

    #[test]
    fn emails() {
        assert_eq!(
            parse_address("Jane <jane@example.org>").as_deref(),
            Some("jane@example.org")
        );
        assert_eq!(
            parse_address("jane@example.org (Jane)").as_deref(),
            Some("jane@example.org")
        );
        assert_eq!(parse_address("a@example.org, b@example.org"), None);
        assert_eq!(
            parse_address("\"Doe, Jane\" <jane@example.org>").as_deref(),
            Some("jane@example.org")
        );
        assert_eq!(parse_address("   "), None);
        assert_eq!(parse_address("Jane <jane@example.org"), None);
        assert!(validate_email("jane.doe+tag@mail.example.org").is_ok());
        assert!(validate_email("jane@[127.0.0.1]").is_ok());
        for (addr, reason) in [
            ("jane", "An email address must have an @-sign."),
            (
                "a@b@c.org",
                "The email address is not valid. It must have exactly one @-sign.",
            ),
            ("@example.org", "There must be something before the @-sign."),
            ("jane@", "There must be something after the @-sign."),
            (
                ".jane@example.org",
                "An email address cannot start with a period.",
            ),
            (
                "jane.@example.org",
                "An email address cannot have a period immediately before the @-sign.",
            ),
            (
                "ja..ne@example.org",
                "An email address cannot have two periods in a row.",
            ),
            (
                "jane@exa_mple.org",
                "The part after the @-sign contains invalid characters: '_'.",
            ),
            (
                "jane@.example.org",
                "An email address cannot have a period immediately after the @-sign.",
            ),
            (
                "jane@example.org.",
                "An email address cannot end with a period.",
            ),
            (
                "jane@example..org",
                "An email address cannot have two periods in a row.",
            ),
            (
                "jane@-example.org",
                "An email address cannot have a hyphen immediately after the @-sign or before a period.",
            ),
            (
                "jane@localhost",
                "The part after the @-sign is not valid. It should have a period.",
            ),
            (
                "jane@1.2.3.4",
                "The part after the @-sign is not valid. It is not within a valid top-level domain.",
            ),
            (
                "ja(ne@example.org",
                "The email address contains invalid characters before the @-sign: '('.",
            ),
        ] {
            assert_eq!(validate_email(addr).unwrap_err(), reason, "{addr}");
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "https://example.org",
            "http://example.org/path?q=1#frag",
            "HTTPS://EXAMPLE.ORG",
            "https://user@host:8080/",
            "https://[::1]:8000/x",
            "https://127.0.0.1",
            "https://example.org/a%20b",
        ] {
            assert!(is_valid_url(ok), "{ok}");
        }
        for bad in [
            "",
            "example.org",
            "ftp://example.org",
            "https://",
            "https:///path",
            "https://exa mple.org",
            "https://host:port",
            "javascript:alert(1)",
            "https://[zz]/",
            "https://[::1",
            "https://example.org/<x>",
            "mailto:a@b.org",
        ] {
            assert!(!is_valid_url(bad), "{bad}");
        }
    }

    #[test]
    fn requirements() {
        assert!(
            parse_requirement("requests[socks]>=2,<3; python_version >= \"3.8\"")
                .unwrap()
                .direct
                .is_none()
        );
        assert_eq!(
            parse_requirement("foo @ ./local/path")
                .unwrap()
                .direct
                .as_deref(),
            Some("foo @ ./local/path")
        );
        assert_eq!(
            parse_requirement("Foo_Bar [x] @ https://e.org/f.whl ; os_name == \"nt\"")
                .unwrap()
                .direct
                .as_deref(),
            Some("Foo_Bar[x] @ https://e.org/f.whl ; os_name == \"nt\"")
        );
        assert!(parse_requirement("foo >=").is_err());
        assert!(parse_requirement("").is_err());
        assert!(parse_requirement("foo; nonsense").is_err());
        // Inputs that make pep508_rs panic are refused before it sees them.
        assert!(parse_requirement("A- ").is_err());
        assert!(parse_requirement("a[b-]").is_err());
        assert!(parse_requirement("a [b, c.] >=1").is_err());
        assert!(parse_requirement("a[b, c]").is_ok());
        // Regression (fuzz target `metadata`): an unclosed extras list.
        assert!(precheck_requirement("Zid[test, li.,8.15").is_err());
    }

    /// Regression (fuzz target `metadata`): a non-ASCII token after a marker expression made
    /// pep508_rs slice inside a character and panic.
    #[test]
    fn non_ascii_after_a_marker_is_refused_before_the_parser() {
        let crashing = "pytest-asyncio >=0.17 ; extra == \"test\"#Requir\u{fffd}\u{fffd}* testpath";
        assert!(precheck_requirement(crashing).is_err());
        assert!(parse_requirement(crashing).is_err());
        assert!(precheck_requirement("a ; extra == 'x' and\u{e9}").is_err());
        // Bad quoting changes which token the parser measures: any non-ASCII marker is out.
        let requoted = "p ; sys_platform != \"c; extra == \"doc\"a>=\u{fffd}3; extra == \"doc\"";
        assert!(precheck_requirement(requoted).is_err());
        assert!(precheck_requirement("a ; platform_machine == \"\u{e9} x\"").is_err());
        // Non-ASCII in a URL is left to the parser.
        assert!(precheck_requirement("a @ https://\u{e9}.example/a.whl").is_ok());
        assert!(precheck_requirement("a @ https://e.example/a;\u{e9}.whl").is_ok());
        for metadata in [
            &include_bytes!("../tests/fixtures/fuzz-metadata-marker-crash")[..],
            &include_bytes!("../tests/fixtures/fuzz-metadata-marker-crash-2")[..],
        ] {
            if let Ok(parsed) = crate::core_metadata::parse_core_metadata(metadata) {
                assert!(validate_metadata(&parsed).is_err());
            }
        }
    }

    #[test]
    fn content_types() {
        assert!(check_content_type("text/plain").is_ok());
        assert!(check_content_type("TEXT/X-RST; charset=utf-8").is_ok());
        assert!(check_content_type("text/markdown; variant=\"CommonMark\"").is_ok());
        assert!(check_content_type("text/html").is_err());
        assert!(check_content_type("").is_err());
    }

    #[test]
    fn valid_metadata_passes() {
        let m = ReleaseMetadata {
            metadata_version: Some("2.4".into()),
            name: Some("Foo".into()),
            version: Some("1.0".into()),
            license_expression: Some("MIT".into()),
            dynamic: vec!["Requires-Dist".into()],
            ..Default::default()
        };
        assert_eq!(validate_metadata(&m), Ok(()));
        let mut bad = m.clone();
        bad.name = Some("-Foo".into());
        assert_eq!(
            validate_metadata(&bad).unwrap_err().message,
            format!("'-Foo' is invalid for 'name'. {CORE_METADATA_HELP}")
        );
        bad.name = None;
        assert_eq!(
            validate_metadata(&bad).unwrap_err().message,
            format!("'name' is a required field. {CORE_METADATA_HELP}")
        );
    }

    #[test]
    fn serde_round_trip_and_helpers() {
        let m = ReleaseMetadata {
            name: Some("x".into()),
            classifiers: vec!["A :: B".into()],
            project_urls: vec!["Home, https://x.org".into(), "NoUrl".into(), "A,B,C".into()],
            keywords: Some("a, b".into()),
            ..Default::default()
        };
        let json = serde_json::to_string(&m).unwrap();
        let back: ReleaseMetadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        let partial: ReleaseMetadata = serde_json::from_str("{\"name\":\"y\"}").unwrap();
        assert_eq!(partial.name.as_deref(), Some("y"));
        assert_eq!(
            m.project_urls_map(),
            [
                ("Home".to_owned(), "https://x.org".to_owned()),
                ("NoUrl".to_owned(), String::new()),
                ("A".to_owned(), "B,C".to_owned())
            ]
        );
        assert_eq!(m.keywords_list(), ["a", "b"]);
        assert!(ReleaseMetadata::default().keywords_list().is_empty());
    }

    proptest! {
        #[test]
        fn requirement_parser_never_panics(
            s in "[a-zA-Z0-9 ._\\-\\[\\],;@<>=!~()'\"*]{0,40}",
            t in "(a|A1|x_y|a-)( ?\\[[a-z,._ -]{0,8}\\])? ?(>=1|==1.*|~=1.0|@ http://x)? ?(; ?(python_version|extra|os_name|sys_platform|platform_release) ?(<|>=|==|in|not in|~=) ?['\"][a-z0-9.*]{0,4}['\"])?( (and|or) extra == 'x')?",
        ) {
            let _ = parse_requirement(&s);
            let _ = parse_requirement(&t);
        }

        #[test]
        fn validators_never_panic(s in "\\PC{0,50}") {
            let _ = parse_address(&s);
            let _ = validate_email(&s);
            let _ = is_valid_url(&s);
            let _ = parse_requirement(&s);
            let _ = check_content_type(&s);
            let _ = check_license_file(&s);
            let _ = check_import_name("import-name", &s);
            let m = ReleaseMetadata {
                metadata_version: Some("2.5".into()), name: Some(s.clone()), version: Some(s.clone()),
                summary: Some(s.clone()), author_email: Some(s.clone()), requires_dist: vec![s.clone()],
                project_urls: vec![s.clone()], license_expression: Some(s.clone()), dynamic: vec![s.clone()],
                ..Default::default()
            };
            let _ = validate_metadata(&m);
        }
    }
}
