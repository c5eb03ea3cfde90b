//! Core metadata files (`METADATA`, `PKG-INFO`): RFC 822-style parsing and the consistency
//! check between the uploaded form and the file inside the distribution.

use crate::metadata::ReleaseMetadata;
use crate::name::normalize;
use crate::pyrepr::repr;
use crate::refusal::Refusal;
use crate::version::Version;

/// Where a header's value goes.
enum Slot {
    Single(fn(&mut ReleaseMetadata) -> &mut Option<String>),
    Multi(fn(&mut ReleaseMetadata) -> &mut Vec<String>),
}

fn slot(header: &str) -> Option<Slot> {
    use Slot::{Multi, Single};
    Some(match header {
        "metadata-version" => Single(|m| &mut m.metadata_version),
        "name" => Single(|m| &mut m.name),
        "version" => Single(|m| &mut m.version),
        "summary" => Single(|m| &mut m.summary),
        "description" => Single(|m| &mut m.description),
        "description-content-type" => Single(|m| &mut m.description_content_type),
        "keywords" => Single(|m| &mut m.keywords),
        "home-page" => Single(|m| &mut m.home_page),
        "download-url" => Single(|m| &mut m.download_url),
        "author" => Single(|m| &mut m.author),
        "author-email" => Single(|m| &mut m.author_email),
        "maintainer" => Single(|m| &mut m.maintainer),
        "maintainer-email" => Single(|m| &mut m.maintainer_email),
        "license" => Single(|m| &mut m.license),
        "license-expression" => Single(|m| &mut m.license_expression),
        "requires-python" => Single(|m| &mut m.requires_python),
        "license-file" => Multi(|m| &mut m.license_file),
        "classifier" => Multi(|m| &mut m.classifiers),
        "platform" => Multi(|m| &mut m.platform),
        "supported-platform" => Multi(|m| &mut m.supported_platform),
        "requires-dist" => Multi(|m| &mut m.requires_dist),
        "provides-dist" => Multi(|m| &mut m.provides_dist),
        "obsoletes-dist" => Multi(|m| &mut m.obsoletes_dist),
        "requires-external" => Multi(|m| &mut m.requires_external),
        "requires" => Multi(|m| &mut m.requires),
        "provides" => Multi(|m| &mut m.provides),
        "obsoletes" => Multi(|m| &mut m.obsoletes),
        "provides-extra" => Multi(|m| &mut m.provides_extra),
        "dynamic" => Multi(|m| &mut m.dynamic),
        "project-url" => Multi(|m| &mut m.project_urls),
        "import-name" => Multi(|m| &mut m.import_name),
        "import-namespace" => Multi(|m| &mut m.import_namespace),
        _ => return None,
    })
}

/// Strips the indentation of a folded line; for `Description` also the `|` that setuptools
/// puts after eight spaces to keep blank lines.
fn unfold_line(line: &str, description: bool) -> &str {
    let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
    let rest = &line[indent.min(8)..];
    if description
        && indent >= 8
        && let Some(r) = rest.strip_prefix('|')
    {
        return r;
    }
    if description { rest } else { rest.trim_start() }
}

/// Parses a `METADATA`/`PKG-INFO` file: headers with folded continuation lines, repeated
/// multiple-use fields, and a body that becomes the description. CRLF and invalid UTF-8 are
/// tolerated; unknown headers are ignored. Fails only when a single-use field repeats
/// (`'<field>' has invalid data`, as `packaging` words it) or no header is found.
pub fn parse_core_metadata(bytes: &[u8]) -> Result<ReleaseMetadata, String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut lines = text.split('\n');
    let mut body: Option<String> = None;
    while let Some(line) = lines.next() {
        if line.is_empty() {
            body = Some(lines.collect::<Vec<_>>().join("\n"));
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((name, value)) = headers.last_mut() {
                let piece = unfold_line(line, name == "description");
                value.push('\n');
                value.push_str(piece);
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    if headers.is_empty() {
        return Err("no metadata headers found".into());
    }
    let mut m = ReleaseMetadata::default();
    for (name, value) in headers {
        let value = if name == "description" {
            value
        } else {
            value.trim_end().to_owned()
        };
        match slot(&name) {
            Some(Slot::Single(get)) => {
                let s = get(&mut m);
                if s.is_some() {
                    return Err(format!("{} has invalid data", repr(&name)));
                }
                *s = Some(value);
            }
            Some(Slot::Multi(get)) => get(&mut m).push(value),
            None => {}
        }
    }
    if let Some(body) = body
        .map(|b| b.trim_end_matches('\n').to_owned())
        .filter(|b| !b.is_empty())
    {
        m.description = Some(body);
    }
    Ok(m)
}

/// Checks that the metadata file inside a distribution names the same project (PEP 503) and
/// the same version (PEP 440 equality) as the upload form.
pub fn check_wheel_metadata_matches(
    form: &ReleaseMetadata,
    file: &ReleaseMetadata,
) -> Result<(), Refusal> {
    let form_name = form.name.as_deref().unwrap_or_default();
    let file_name = file.name.as_deref().unwrap_or_default();
    if file_name.is_empty() || normalize(form_name) != normalize(file_name) {
        return Err(Refusal::bad_request(format!(
            "Name in the distribution's metadata should be {} not {}.",
            repr(form_name),
            repr(file_name)
        )));
    }
    let form_version = form.version.as_deref().unwrap_or_default();
    let file_version = file.version.as_deref().unwrap_or_default();
    let same = match (Version::parse(form_version), Version::parse(file_version)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        return Err(Refusal::bad_request(format!(
            "Version in the distribution's metadata should be {} not {}.",
            repr(form_version),
            repr(file_version)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "Metadata-Version: 2.4\r\n\
Name: Foo.Bar\r\n\
Version: 1.0.0\r\n\
Summary: A thing\r\n\
License: Line one\r\n        line two\r\n\
Classifier: Programming Language :: Python :: 3\r\n\
Classifier: License :: OSI Approved :: MIT License\r\n\
Requires-Dist: requests>=2\r\n\
Requires-Dist: rich; extra == \"cli\"\r\n\
Project-URL: Homepage, https://example.org\r\n\
X-Unknown: ignored\r\n\
Provides-Extra: cli\r\n\
\r\n\
# Foo\r\n\
\r\n\
Body text.\r\n";

    #[test]
    fn parses_headers_and_body() {
        let m = parse_core_metadata(SAMPLE.as_bytes()).unwrap();
        assert_eq!(m.metadata_version.as_deref(), Some("2.4"));
        assert_eq!(m.name.as_deref(), Some("Foo.Bar"));
        assert_eq!(m.version.as_deref(), Some("1.0.0"));
        assert_eq!(m.summary.as_deref(), Some("A thing"));
        assert_eq!(m.license.as_deref(), Some("Line one\nline two"));
        assert_eq!(m.classifiers.len(), 2);
        assert_eq!(m.requires_dist, ["requests>=2", "rich; extra == \"cli\""]);
        assert_eq!(
            m.project_urls_map(),
            [("Homepage".to_owned(), "https://example.org".to_owned())]
        );
        assert_eq!(m.provides_extra, ["cli"]);
        assert_eq!(m.description.as_deref(), Some("# Foo\n\nBody text."));
    }

    #[test]
    fn description_header_with_pipes() {
        let raw = b"Metadata-Version: 1.1\nName: x\nVersion: 1\nDescription: first\n        |\n        second\nAuthor: me\n";
        let m = parse_core_metadata(raw).unwrap();
        assert_eq!(m.description.as_deref(), Some("first\n\nsecond"));
        assert_eq!(m.author.as_deref(), Some("me"));
    }

    #[test]
    fn tolerates_bad_utf8_and_case() {
        let m =
            parse_core_metadata(b"metadata-version: 2.1\nNAME: x\nversion: 1\nSummary: caf\xe9\n")
                .unwrap();
        assert_eq!(m.name.as_deref(), Some("x"));
        assert_eq!(m.summary.as_deref(), Some("caf\u{fffd}"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_core_metadata(b"Name: a\nName: b\n").unwrap_err(),
            "'name' has invalid data"
        );
        assert!(parse_core_metadata(b"").is_err());
        assert!(parse_core_metadata(b"\nbody only").is_err());
    }

    fn meta(name: &str, version: &str) -> ReleaseMetadata {
        ReleaseMetadata {
            name: Some(name.into()),
            version: Some(version.into()),
            ..Default::default()
        }
    }

    #[test]
    fn consistency() {
        assert_eq!(
            check_wheel_metadata_matches(&meta("Foo.Bar", "1.0"), &meta("foo_bar", "1.0.0")),
            Ok(())
        );
        assert_eq!(
            check_wheel_metadata_matches(&meta("foo", "1.0"), &meta("bar", "1.0"))
                .unwrap_err()
                .message,
            "Name in the distribution's metadata should be 'foo' not 'bar'."
        );
        assert_eq!(
            check_wheel_metadata_matches(&meta("foo", "1.0"), &ReleaseMetadata::default())
                .unwrap_err()
                .message,
            "Name in the distribution's metadata should be 'foo' not ''."
        );
        assert_eq!(
            check_wheel_metadata_matches(&meta("foo", "1.0"), &meta("foo", "1.1"))
                .unwrap_err()
                .message,
            "Version in the distribution's metadata should be '1.0' not '1.1'."
        );
        assert!(check_wheel_metadata_matches(&meta("foo", "1.0"), &meta("foo", "dog")).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_core_metadata(&bytes);
        }

        #[test]
        fn header_soup_never_panics(lines in proptest::collection::vec("[ \tA-Za-z:|-]{0,12}", 0..20)) {
            let _ = parse_core_metadata(lines.join("\n").as_bytes());
        }
    }
}
