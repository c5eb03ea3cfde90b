//! Distribution filenames: parsing as `packaging.utils` does, and PyPI's upload filename rules.

use crate::name::normalize;
use crate::pyrepr::repr;
use crate::refusal::Refusal;
use crate::version::Version;

/// Kind of distribution an upload declares in `filetype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    /// Source distribution (`sdist`).
    Sdist,
    /// Wheel (`bdist_wheel`).
    BdistWheel,
}

impl FileType {
    /// Parses the wire value (`sdist` or `bdist_wheel`).
    pub fn parse(s: &str) -> Option<FileType> {
        match s {
            "sdist" => Some(FileType::Sdist),
            "bdist_wheel" => Some(FileType::BdistWheel),
            _ => None,
        }
    }

    /// Returns the wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Sdist => "sdist",
            FileType::BdistWheel => "bdist_wheel",
        }
    }
}

/// The parts of a wheel filename (`name-version[-build]-python-abi-platform.whl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelFilename {
    /// Name part as written in the filename.
    pub name: String,
    /// Version part as written in the filename.
    pub version: String,
    /// Build tag, if any.
    pub build: Option<String>,
    /// Python tags (lower-cased), split at `.`.
    pub python_tags: Vec<String>,
    /// ABI tags (lower-cased), split at `.`.
    pub abi_tags: Vec<String>,
    /// Platform tags (lower-cased), split at `.`.
    pub platform_tags: Vec<String>,
}

impl WheelFilename {
    /// Returns the PEP 503 normalized project name.
    pub fn normalized_name(&self) -> String {
        normalize(&self.name)
    }

    /// Returns the parsed version (parsing was checked when the filename was parsed).
    pub fn parsed_version(&self) -> Result<Version, String> {
        Version::parse(&self.version)
    }
}

/// The parts of an sdist filename (`name-version.tar.gz` or `.zip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdistFilename {
    /// Name part as written in the filename.
    pub name: String,
    /// Version part as written in the filename.
    pub version: String,
}

/// Python's `str.isidentifier`, approximated with Unicode alphabetic/alphanumeric classes.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Parses a wheel filename as `packaging.utils.parse_wheel_filename` does, with its error texts.
pub fn parse_wheel_filename(filename: &str) -> Result<WheelFilename, String> {
    let Some(stem) = filename.strip_suffix(".whl") else {
        return Err(format!(
            "Invalid wheel filename (extension must be '.whl'): {}",
            repr(filename)
        ));
    };
    let r = repr(stem);
    let dashes = stem.matches('-').count();
    if dashes != 4 && dashes != 5 {
        return Err(format!(
            "Invalid wheel filename (wrong number of parts): {r}"
        ));
    }
    let parts: Vec<&str> = stem.splitn(dashes - 1, '-').collect();
    let name = parts.first().copied().unwrap_or_default();
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c == '_' || c == '.' || c.is_alphanumeric());
    if name.contains("__") || !name_ok {
        return Err(format!("Invalid project name: {r}"));
    }
    let version = parts.get(1).copied().unwrap_or_default();
    if Version::parse(version).is_err() {
        return Err(format!("Invalid wheel filename (invalid version): {r}"));
    }
    let build = if dashes == 5 {
        let b = parts.get(2).copied().unwrap_or_default();
        if !b.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("Invalid build number: {b} in {r}"));
        }
        Some(b.to_owned())
    } else {
        None
    };
    let tag = parts.last().copied().unwrap_or_default();
    let components: Vec<Vec<String>> = tag
        .split('-')
        .map(|c| c.split('.').map(str::to_lowercase).collect())
        .collect();
    let invalid_tag = || format!("Invalid wheel filename (invalid tag component): {r}");
    if components.iter().any(|c| c.iter().any(String::is_empty)) {
        return Err(invalid_tag());
    }
    let [py, abi, plat]: [Vec<String>; 3] = components.try_into().map_err(|_| invalid_tag())?;
    if !py.iter().all(|p| is_identifier(p)) {
        return Err(invalid_tag());
    }
    Ok(WheelFilename {
        name: name.to_owned(),
        version: version.to_owned(),
        build,
        python_tags: py,
        abi_tags: abi,
        platform_tags: plat,
    })
}

/// Parses an sdist filename as `packaging.utils.parse_sdist_filename` does, with its error texts.
pub fn parse_sdist_filename(filename: &str) -> Result<SdistFilename, String> {
    let Some(stem) = filename
        .strip_suffix(".tar.gz")
        .or_else(|| filename.strip_suffix(".zip"))
    else {
        return Err(format!(
            "Invalid sdist filename (extension must be '.tar.gz' or '.zip'): {}",
            repr(filename)
        ));
    };
    let Some((name, version)) = stem.rsplit_once('-') else {
        return Err(format!("Invalid sdist filename: {}", repr(filename)));
    };
    if name.is_empty() {
        return Err(format!(
            "Invalid sdist filename (empty project name): {}",
            repr(filename)
        ));
    }
    if Version::parse(version).is_err() {
        return Err(format!(
            "Invalid sdist filename (invalid version): {}",
            repr(filename)
        ));
    }
    Ok(SdistFilename {
        name: name.to_owned(),
        version: version.to_owned(),
    })
}

const MANYLINUX_ARCHES: [&str; 8] = [
    "x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le", "s390x", "riscv64",
];
const MUSLLINUX_ARCHES: [&str; 7] = [
    "x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x", "riscv64",
];
const MACOS_ARCHES: [&str; 11] = [
    "ppc",
    "ppc64",
    "i386",
    "x86_64",
    "arm64",
    "intel",
    "fat",
    "fat3",
    "fat64",
    "universal",
    "universal2",
];
const MACOS_MAJORS_X0: [&str; 6] = ["11", "12", "13", "14", "15", "26"];
const STATIC_PLATFORMS: [&str; 18] = [
    "any",
    "win32",
    "win_amd64",
    "win_arm64",
    "win_ia64",
    "manylinux1_x86_64",
    "manylinux1_i686",
    "manylinux2010_x86_64",
    "manylinux2010_i686",
    "manylinux2014_x86_64",
    "manylinux2014_i686",
    "manylinux2014_aarch64",
    "manylinux2014_armv7l",
    "manylinux2014_ppc64",
    "manylinux2014_ppc64le",
    "manylinux2014_s390x",
    "linux_armv6l",
    "linux_armv7l",
];

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Splits `X_Y_rest` into the two numbers and the rest.
fn split_xy(s: &str) -> Option<(&str, &str, &str)> {
    let mut it = s.splitn(3, '_');
    let (x, y, rest) = (it.next()?, it.next()?, it.next()?);
    (is_digits(x) && is_digits(y)).then_some((x, y, rest))
}

/// Tells whether PyPI accepts a wheel platform tag (spec a.5 list).
pub fn is_allowed_platform_tag(tag: &str) -> bool {
    if STATIC_PLATFORMS.contains(&tag) {
        return true;
    }
    if let Some(rest) = tag.strip_prefix("manylinux_") {
        return split_xy(rest).is_some_and(|(_, _, arch)| MANYLINUX_ARCHES.contains(&arch));
    }
    if let Some(rest) = tag.strip_prefix("musllinux_") {
        return split_xy(rest).is_some_and(|(_, _, arch)| MUSLLINUX_ARCHES.contains(&arch));
    }
    if let Some(rest) = tag.strip_prefix("macosx_") {
        return split_xy(rest).is_some_and(|(major, minor, arch)| {
            let version_ok = major == "10" || (MACOS_MAJORS_X0.contains(&major) && minor == "0");
            version_ok && MACOS_ARCHES.contains(&arch)
        });
    }
    if let Some(rest) = tag.strip_prefix("ios_") {
        return split_xy(rest).is_some_and(|(_, _, rest)| {
            matches!(
                rest,
                "arm64_iphoneos"
                    | "arm64_iphonesimulator"
                    | "x86_64_iphoneos"
                    | "x86_64_iphonesimulator"
            )
        });
    }
    if let Some(rest) = tag.strip_prefix("android_") {
        return rest.split_once('_').is_some_and(|(api, abi)| {
            is_digits(api) && matches!(abi, "armeabi_v7a" | "arm64_v8a" | "x86" | "x86_64")
        });
    }
    if let Some(rest) = tag.strip_prefix("pyemscripten_") {
        return split_xy(rest).is_some_and(|(_, _, arch)| arch == "wasm32");
    }
    false
}

const PEP527_EXT_HELP: &str = "Invalid file extension: Use .tar.gz, .whl or .zip extension. \
     See https://www.python.org/dev/peps/pep-0527 and https://peps.python.org/pep-0715/ for more information";

/// Returns the recognised distribution extension of `filename` (case-insensitive), if any.
fn dist_extension(filename: &str) -> Option<&'static str> {
    let lower = filename.to_ascii_lowercase();
    [".tar.gz", ".zip", ".whl"]
        .into_iter()
        .find(|ext| lower.len() > ext.len() && lower.ends_with(ext))
}

/// Checks an upload's filename against its filetype, project and metadata: spec a.4 step 13,
/// then the a.5 sdist (1–4) or wheel (1–5) filename rules, in PyPI's order and wording.
///
/// `metadata_version` and `metadata_name` are the release's validated `version` and `name`.
pub fn check_upload_filename(
    filename: &str,
    filetype: FileType,
    project_display_name: &str,
    project_normalized: &str,
    metadata_version: &Version,
    metadata_name: &str,
) -> Result<(), Refusal> {
    if filename.chars().any(|c| (c as u32) < 32 || c == '\x7f') {
        return Err(Refusal::bad_request(
            "Cannot upload a file with non-printable characters (ordinals 0-31) or the DEL character \
             (ordinal 127) in the name.",
        ));
    }
    if filename.contains('/') || filename.contains('\\') {
        return Err(Refusal::bad_request(
            "Cannot upload a file with '/' or '\\' in the name.",
        ));
    }
    let Some(ext) = dist_extension(filename) else {
        return Err(Refusal::bad_request(PEP527_EXT_HELP));
    };
    let ext_fits = match filetype {
        FileType::Sdist => ext != ".whl",
        FileType::BdistWheel => ext == ".whl",
    };
    if !ext_fits {
        return Err(Refusal::bad_request(format!(
            "Invalid file extension: Extension {ext} is invalid for filetype {}. \
             See https://www.python.org/dev/peps/pep-0527 for more information.",
            filetype.as_str()
        )));
    }
    let underscored = project_normalized.replace('-', "_");
    let start_with = || {
        Refusal::bad_request(format!(
            "Start filename for {} with {}.",
            repr(project_display_name),
            repr(&underscored)
        ))
    };
    match filetype {
        FileType::Sdist => {
            let invalid = || {
                Refusal::bad_request(format!("Invalid source distribution filename: {filename}"))
            };
            let parsed = parse_sdist_filename(filename).map_err(|_| invalid())?;
            let mut name = parsed.name;
            if metadata_version.is_postrelease() && normalize(&name) != project_normalized {
                // `name-1.0-9.tar.gz`: the version holds a hyphen, so split one hyphen earlier.
                let stem = filename
                    .strip_suffix(".tar.gz")
                    .or_else(|| filename.strip_suffix(".zip"))
                    .unwrap_or(filename);
                let mut it = stem.rsplitn(3, '-');
                let (Some(_), Some(_), Some(head)) = (it.next(), it.next(), it.next()) else {
                    return Err(start_with());
                };
                Version::parse(&stem[head.len() + 1..]).map_err(|_| invalid())?;
                name = head.to_owned();
            }
            if normalize(&name) != project_normalized {
                return Err(start_with());
            }
            let expected = format!("{underscored}-{}.tar.gz", metadata_version.normalized());
            if filename != expected {
                return Err(Refusal::bad_request(format!(
                    "Filename {} is invalid, should be {}.",
                    repr(filename),
                    repr(&expected)
                )));
            }
        }
        FileType::BdistWheel => {
            let wheel = parse_wheel_filename(filename).map_err(Refusal::bad_request)?;
            if let Some(tag) = wheel
                .platform_tags
                .iter()
                .find(|t| !is_allowed_platform_tag(t))
            {
                return Err(Refusal::bad_request(format!(
                    "Binary wheel {} has an unsupported platform tag {}.",
                    repr(filename),
                    repr(tag)
                )));
            }
            if wheel.normalized_name() != normalize(metadata_name) {
                return Err(start_with());
            }
            if wheel.name != underscored {
                return Err(Refusal::bad_request(format!(
                    "Filename {} should contain the normalized project name {}, not {}.",
                    repr(filename),
                    repr(&underscored),
                    repr(&wheel.name)
                )));
            }
            let file_version = wheel.parsed_version().map_err(Refusal::bad_request)?;
            if &file_version != metadata_version {
                return Err(Refusal::bad_request(format!(
                    "Version in filename should be {} not {}.",
                    repr(&metadata_version.normalized()),
                    repr(&file_version.normalized())
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn filetype_round_trip() {
        assert_eq!(FileType::parse("sdist"), Some(FileType::Sdist));
        assert_eq!(FileType::parse("bdist_wheel"), Some(FileType::BdistWheel));
        assert_eq!(FileType::parse("bdist_egg"), None);
        assert_eq!(FileType::Sdist.as_str(), "sdist");
        assert_eq!(FileType::BdistWheel.as_str(), "bdist_wheel");
    }

    #[test]
    fn wheel_parse_ok() {
        let w = parse_wheel_filename("foo_bar-1.0-py2.py3-none-any.whl").unwrap();
        assert_eq!(w.name, "foo_bar");
        assert_eq!(w.normalized_name(), "foo-bar");
        assert_eq!(w.version, "1.0");
        assert_eq!(w.build, None);
        assert_eq!(w.python_tags, ["py2", "py3"]);
        assert_eq!(w.abi_tags, ["none"]);
        assert_eq!(w.platform_tags, ["any"]);
        let w = parse_wheel_filename(
            "foo-1.0-1a-cp312-CP312-Manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        assert_eq!(w.build.as_deref(), Some("1a"));
        assert_eq!(w.abi_tags, ["cp312"]);
        assert_eq!(
            w.platform_tags,
            ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
        );
        assert_eq!(w.parsed_version().unwrap(), v("1.0"));
    }

    #[test]
    fn wheel_parse_errors_match_packaging() {
        for (f, msg) in [
            (
                "foo-1.0.tar.gz",
                "Invalid wheel filename (extension must be '.whl'): 'foo-1.0.tar.gz'",
            ),
            (
                "foo-1.0.WHL",
                "Invalid wheel filename (extension must be '.whl'): 'foo-1.0.WHL'",
            ),
            (
                "foo-1.0.whl",
                "Invalid wheel filename (wrong number of parts): 'foo-1.0'",
            ),
            (
                "a-b-c-d-e-f-g.whl",
                "Invalid wheel filename (wrong number of parts): 'a-b-c-d-e-f-g'",
            ),
            (
                "foo-1.0-q-py3-none-any.whl",
                "Invalid build number: q in 'foo-1.0-q-py3-none-any'",
            ),
            (
                "foo-0.0.4test1-py3-none-any.whl",
                "Invalid wheel filename (invalid version): 'foo-0.0.4test1-py3-none-any'",
            ),
            (
                "foo__bar-1.0-py3-none-any.whl",
                "Invalid project name: 'foo__bar-1.0-py3-none-any'",
            ),
            (
                "-1.0-py3-none-any.whl",
                "Invalid project name: '-1.0-py3-none-any'",
            ),
            (
                "fo+o-1.0-py3-none-any.whl",
                "Invalid project name: 'fo+o-1.0-py3-none-any'",
            ),
            (
                "foo-1.0-py3..x-none-any.whl",
                "Invalid wheel filename (invalid tag component): 'foo-1.0-py3..x-none-any'",
            ),
            (
                "foo-1.0-py3-none-.whl",
                "Invalid wheel filename (invalid tag component): 'foo-1.0-py3-none-'",
            ),
            (
                "foo-1.0-3py-none-any.whl",
                "Invalid wheel filename (invalid tag component): 'foo-1.0-3py-none-any'",
            ),
        ] {
            assert_eq!(parse_wheel_filename(f).unwrap_err(), msg, "{f}");
        }
    }

    #[test]
    fn sdist_parse() {
        let s = parse_sdist_filename("foo-bar-1.0.tar.gz").unwrap();
        assert_eq!((s.name.as_str(), s.version.as_str()), ("foo-bar", "1.0"));
        let s = parse_sdist_filename("foo-1.0.zip").unwrap();
        assert_eq!((s.name.as_str(), s.version.as_str()), ("foo", "1.0"));
        for (f, msg) in [
            (
                "foo-1.0.tgz",
                "Invalid sdist filename (extension must be '.tar.gz' or '.zip'): 'foo-1.0.tgz'",
            ),
            ("foo.tar.gz", "Invalid sdist filename: 'foo.tar.gz'"),
            (
                "-1.0.tar.gz",
                "Invalid sdist filename (empty project name): '-1.0.tar.gz'",
            ),
            (
                "foo-bar.tar.gz",
                "Invalid sdist filename (invalid version): 'foo-bar.tar.gz'",
            ),
        ] {
            assert_eq!(parse_sdist_filename(f).unwrap_err(), msg, "{f}");
        }
    }

    #[test]
    fn platform_tags() {
        for ok in [
            "any",
            "win32",
            "win_amd64",
            "win_arm64",
            "win_ia64",
            "manylinux1_x86_64",
            "manylinux1_i686",
            "manylinux2010_x86_64",
            "manylinux2010_i686",
            "manylinux2014_aarch64",
            "manylinux2014_ppc64",
            "manylinux2014_s390x",
            "linux_armv6l",
            "linux_armv7l",
            "manylinux_2_17_x86_64",
            "manylinux_2_28_riscv64",
            "manylinux_2_5_ppc64",
            "musllinux_1_2_x86_64",
            "musllinux_1_1_armv7l",
            "macosx_10_9_x86_64",
            "macosx_10_15_universal2",
            "macosx_11_0_arm64",
            "macosx_26_0_arm64",
            "macosx_10_6_fat3",
            "ios_13_0_arm64_iphoneos",
            "ios_12_0_x86_64_iphonesimulator",
            "android_21_arm64_v8a",
            "android_24_armeabi_v7a",
            "android_21_x86",
            "pyemscripten_2024_0_wasm32",
        ] {
            assert!(is_allowed_platform_tag(ok), "{ok}");
        }
        for bad in [
            "linux_x86_64",
            "linux_i686",
            "musllinux_1_2_ppc64",
            "manylinux_2_17_sparc",
            "macosx_11_1_arm64",
            "macosx_16_0_arm64",
            "macosx_10_9_arm",
            "ios_13_0_arm64",
            "android_x_x86",
            "pyemscripten_2024_0_wasm64",
            "manylinux_x_17_x86_64",
            "macosx_10__x86_64",
            "",
            "ANY",
            "win64",
        ] {
            assert!(!is_allowed_platform_tag(bad), "{bad}");
        }
    }

    fn check(f: &str, ft: FileType, meta_version: &str) -> Result<(), String> {
        check_upload_filename(f, ft, "Foo.Bar", "foo-bar", &v(meta_version), "foo.bar")
            .map_err(|e| e.message)
    }

    #[test]
    fn step13_sanity() {
        let np = "Cannot upload a file with non-printable characters (ordinals 0-31) or the DEL character (ordinal 127) in the name.";
        assert_eq!(
            check("foo\x01-1.0.tar.gz", FileType::Sdist, "1.0").unwrap_err(),
            np
        );
        assert_eq!(
            check("foo\x7f-1.0.tar.gz", FileType::Sdist, "1.0").unwrap_err(),
            np
        );
        let sl = "Cannot upload a file with '/' or '\\' in the name.";
        assert_eq!(
            check("a/foo_bar-1.0.tar.gz", FileType::Sdist, "1.0").unwrap_err(),
            sl
        );
        assert_eq!(
            check("a\\foo_bar-1.0.tar.gz", FileType::Sdist, "1.0").unwrap_err(),
            sl
        );
        let ext = "Invalid file extension: Use .tar.gz, .whl or .zip extension. See https://www.python.org/dev/peps/pep-0527 and https://peps.python.org/pep-0715/ for more information";
        for f in [
            "foo_bar-1.0.egg",
            "foo_bar-1.0.tar.bz2",
            ".whl",
            "foo_bar-1.0",
        ] {
            assert_eq!(check(f, FileType::Sdist, "1.0").unwrap_err(), ext, "{f}");
        }
        assert_eq!(
            check("foo_bar-1.0-py3-none-any.whl", FileType::Sdist, "1.0").unwrap_err(),
            "Invalid file extension: Extension .whl is invalid for filetype sdist. See https://www.python.org/dev/peps/pep-0527 for more information."
        );
        assert_eq!(
            check("foo_bar-1.0.tar.gz", FileType::BdistWheel, "1.0").unwrap_err(),
            "Invalid file extension: Extension .tar.gz is invalid for filetype bdist_wheel. See https://www.python.org/dev/peps/pep-0527 for more information."
        );
        assert_eq!(
            check("foo_bar-1.0.zip", FileType::BdistWheel, "1.0").unwrap_err(),
            "Invalid file extension: Extension .zip is invalid for filetype bdist_wheel. See https://www.python.org/dev/peps/pep-0527 for more information."
        );
    }

    #[test]
    fn sdist_rules() {
        assert_eq!(check("foo_bar-1.0.tar.gz", FileType::Sdist, "1.0"), Ok(()));
        assert_eq!(
            check("foo_bar-1.0.post9.tar.gz", FileType::Sdist, "1.0-9"),
            Ok(())
        );
        assert_eq!(
            check("foo_bar-1.0.TAR.GZ", FileType::Sdist, "1.0").unwrap_err(),
            "Invalid source distribution filename: foo_bar-1.0.TAR.GZ"
        );
        assert_eq!(
            check("foo_bar.tar.gz", FileType::Sdist, "1.0").unwrap_err(),
            "Invalid source distribution filename: foo_bar.tar.gz"
        );
        assert_eq!(
            check("other-1.0.tar.gz", FileType::Sdist, "1.0").unwrap_err(),
            "Start filename for 'Foo.Bar' with 'foo_bar'."
        );
        // Post-release with a hyphen in the version: retried one hyphen earlier.
        assert_eq!(
            check("foo_bar-1.0-9.tar.gz", FileType::Sdist, "1.0.post9").unwrap_err(),
            "Filename 'foo_bar-1.0-9.tar.gz' is invalid, should be 'foo_bar-1.0.post9.tar.gz'."
        );
        assert_eq!(
            check("foo_bar-1.o-9.tar.gz", FileType::Sdist, "1.0.post9").unwrap_err(),
            "Invalid source distribution filename: foo_bar-1.o-9.tar.gz"
        );
        for (f, expected) in [
            ("Foo.Bar-1.0.tar.gz", "foo_bar-1.0.tar.gz"),
            ("foo-bar-1.0.tar.gz", "foo_bar-1.0.tar.gz"),
            ("foo_bar-1.0.zip", "foo_bar-1.0.tar.gz"),
            ("foo_bar-1.0.0.tar.gz", "foo_bar-1.0.tar.gz"),
            ("foo_bar-1.1.tar.gz", "foo_bar-1.0.tar.gz"),
            ("foo_bar-v1.0.tar.gz", "foo_bar-1.0.tar.gz"),
        ] {
            assert_eq!(
                check(f, FileType::Sdist, "1.0").unwrap_err(),
                format!("Filename '{f}' is invalid, should be '{expected}'.")
            );
        }
        assert_eq!(
            check("foo_bar-1.2.3.tar.gz", FileType::Sdist, "1.02.3"),
            Ok(())
        );
    }

    #[test]
    fn wheel_rules() {
        assert_eq!(
            check("foo_bar-1.0-py3-none-any.whl", FileType::BdistWheel, "1.0"),
            Ok(())
        );
        assert_eq!(
            check(
                "foo_bar-1.0.0-py3-none-any.whl",
                FileType::BdistWheel,
                "1.0"
            ),
            Ok(())
        );
        assert_eq!(
            check(
                "foo_bar-1.0-1-cp312-cp312-manylinux_2_17_x86_64.whl",
                FileType::BdistWheel,
                "1.0"
            ),
            Ok(())
        );
        assert_eq!(
            check("foo_bar-1.0.whl", FileType::BdistWheel, "1.0").unwrap_err(),
            "Invalid wheel filename (wrong number of parts): 'foo_bar-1.0'"
        );
        assert_eq!(
            check(
                "foo_bar-1.0-py3-none-linux_x86_64.whl",
                FileType::BdistWheel,
                "1.0"
            )
            .unwrap_err(),
            "Binary wheel 'foo_bar-1.0-py3-none-linux_x86_64.whl' has an unsupported platform tag 'linux_x86_64'."
        );
        assert_eq!(
            check(
                "foo_bar-1.0-py3-none-any.linux_x86_64.whl",
                FileType::BdistWheel,
                "1.0"
            )
            .unwrap_err(),
            "Binary wheel 'foo_bar-1.0-py3-none-any.linux_x86_64.whl' has an unsupported platform tag 'linux_x86_64'."
        );
        assert_eq!(
            check("other-1.0-py3-none-any.whl", FileType::BdistWheel, "1.0").unwrap_err(),
            "Start filename for 'Foo.Bar' with 'foo_bar'."
        );
        assert_eq!(
            check("Foo.Bar-1.0-py3-none-any.whl", FileType::BdistWheel, "1.0").unwrap_err(),
            "Filename 'Foo.Bar-1.0-py3-none-any.whl' should contain the normalized project name 'foo_bar', not 'Foo.Bar'."
        );
        assert_eq!(
            check("foo_bar-1.1-py3-none-any.whl", FileType::BdistWheel, "1.0").unwrap_err(),
            "Version in filename should be '1.0' not '1.1'."
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,60}") {
            let _ = parse_wheel_filename(&s);
            let _ = parse_sdist_filename(&s);
            let _ = is_allowed_platform_tag(&s);
            let _ = check_upload_filename(&s, FileType::Sdist, "p", "p", &v("1.0.post1"), "p");
            let _ = check_upload_filename(&s, FileType::BdistWheel, "p", "p", &v("1.0"), "p");
        }

        #[test]
        fn wheel_shaped_names_never_panic(parts in proptest::collection::vec("[a-z0-9._+-]{0,6}", 0..8)) {
            let f = format!("{}.whl", parts.join("-"));
            let _ = parse_wheel_filename(&f);
            let _ = check_upload_filename(&f, FileType::BdistWheel, "p", "p", &v("1.0"), "p");
        }
    }
}
