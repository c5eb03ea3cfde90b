//! Project names: PEP 503 normalization, validity, look-alike folding and the checks PyPI
//! runs before it creates a project on first upload.

use crate::pyrepr::repr;
use crate::refusal::Refusal;
use crate::stdlib_data::STDLIB_NORMALIZED;

/// Help link PyPI cites in project-name rejections.
pub const PROJECT_NAME_HELP_URL: &str = "https://pypi.org/help/#project-name";

/// Returns the PEP 503 normalized form: lower-case, runs of `-`, `_`, `.` folded to one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            in_sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Tells whether `name` matches `^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$` (ASCII, any case).
pub fn is_valid_project_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Returns the look-alike key PyPI compares to refuse confusable names: lower-case, `.`, `_`
/// and `-` removed, `l` and `i` mapped to `1`, `o` to `0`.
pub fn ultranormalize(name: &str) -> String {
    name.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .map(|c| match c {
            'l' | 'i' => '1',
            'o' => '0',
            c => c,
        })
        .collect()
}

/// Tells whether a normalized name is a Python standard-library module name of any version,
/// dotted submodules and their parent namespaces included.
pub fn is_stdlib_module_name(normalized: &str) -> bool {
    STDLIB_NORMALIZED.binary_search(&normalized).is_ok()
}

/// Runs the project-creation checks that need no database, in PyPI's order: name syntax,
/// standard-library clash, prohibited names.
pub fn check_new_project_name(name: &str, prohibited_normalized: &[String]) -> Result<(), Refusal> {
    if !is_valid_project_name(name) {
        return Err(Refusal::bad_request(format!(
            "The name {} is invalid.",
            repr(name)
        )));
    }
    let normalized = normalize(name);
    if is_stdlib_module_name(&normalized) {
        return Err(Refusal::bad_request(format!(
            "The name {} isn't allowed (conflict with Python Standard Library module name). \
             See {PROJECT_NAME_HELP_URL} for more information.",
            repr(name)
        )));
    }
    if prohibited_normalized
        .iter()
        .any(|p| normalize(p) == normalized)
    {
        return Err(Refusal::bad_request(format!(
            "The name {} isn't allowed. See {PROJECT_NAME_HELP_URL} for more information.",
            repr(name)
        )));
    }
    Ok(())
}

/// Returns the 409 for a name whose normalized form is taken by an existing project.
pub fn existing_project_rejection(name: &str) -> Refusal {
    Refusal::conflict(format!(
        "The name {} conflicts with an existing project. See {PROJECT_NAME_HELP_URL} for more information.",
        repr(name)
    ))
}

/// Returns the 400 for a name whose ultranormalized form collides with an existing project.
pub fn too_similar_rejection(name: &str) -> Refusal {
    Refusal::bad_request(format!(
        "The name {} is too similar to an existing project. See {PROJECT_NAME_HELP_URL} for more information.",
        repr(name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refusal::ErrorCode;
    use proptest::prelude::*;

    #[test]
    fn normalize_examples() {
        assert_eq!(normalize("Django"), "django");
        assert_eq!(normalize("oslo.concurrency"), "oslo-concurrency");
        assert_eq!(normalize("Foo__Bar-.-baz"), "foo-bar-baz");
        assert_eq!(normalize("a_b.c-d"), "a-b-c-d");
        assert_eq!(normalize("_x_"), "-x-");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn validity() {
        for ok in ["a", "A", "0", "foo", "Foo.Bar_baz-1", "a-b", "x1"] {
            assert!(is_valid_project_name(ok), "{ok}");
        }
        for bad in [
            "", "-a", "a-", "_a", "a.", "a b", "é", "a\n", "foo!", ".", "a/b",
        ] {
            assert!(!is_valid_project_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn ultranormalize_examples() {
        for n in [
            "toast1ng",
            "toastlng",
            "t0asting",
            "toast-ing",
            "toast.ing",
            "toast_ing",
            "TOASTING",
        ] {
            assert_eq!(ultranormalize(n), ultranormalize("toasting"), "{n}");
        }
        assert_eq!(ultranormalize("Foo-Bar_baz.lio"), "f00barbaz110");
    }

    #[test]
    fn stdlib_names() {
        for n in [
            "xml",
            "XML",
            "pickle",
            "PiCKle",
            "main",
            "future",
            "al",
            "uU",
            "test",
            "encodings.utf_8_sig",
            "distutils.command.build_clib",
            "xmlrpc",
            "xmlrpc.server",
            "xml.etree",
            "xml.etree.ElementTree",
            "xml.parsers",
            "xml.parsers.expat",
            "xml.parsers.expat.errors",
            "encodings.idna",
            "encodings",
            "CGIHTTPServer",
            "cgihttpserver",
            "asynchat",
            "asyncore",
            "distutils",
            "imp",
            "smtpd",
            "os",
            "sys",
        ] {
            assert!(is_stdlib_module_name(&normalize(n)), "{n}");
        }
        for n in ["requests", "numpy", "wharf", "xml-foo"] {
            assert!(!is_stdlib_module_name(&normalize(n)), "{n}");
        }
    }

    #[test]
    fn stdlib_table_is_sorted_and_normalized() {
        assert!(STDLIB_NORMALIZED.windows(2).all(|w| w[0] < w[1]));
        assert!(
            STDLIB_NORMALIZED
                .iter()
                .all(|n| normalize(n) == *n && !n.is_empty())
        );
    }

    #[test]
    fn new_project_checks_in_order() {
        let err = check_new_project_name("foo-", &[]).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert_eq!(err.message, "The name 'foo-' is invalid.");

        let err = check_new_project_name("XML", &["xml".into()]).unwrap_err();
        assert_eq!(
            err.message,
            "The name 'XML' isn't allowed (conflict with Python Standard Library module name). \
             See https://pypi.org/help/#project-name for more information."
        );

        let prohibited = vec!["requirements-txt".to_owned(), "Bad.Name".to_owned()];
        let err = check_new_project_name("requirements.txt", &prohibited).unwrap_err();
        assert_eq!(
            err.message,
            "The name 'requirements.txt' isn't allowed. See https://pypi.org/help/#project-name for more information."
        );
        assert!(check_new_project_name("bad_name", &prohibited).is_err());
        assert!(check_new_project_name("requests", &prohibited).is_ok());
    }

    #[test]
    fn db_backed_rejections() {
        let e = existing_project_rejection("Foo");
        assert_eq!(e.code, ErrorCode::Conflict);
        assert_eq!(
            e.message,
            "The name 'Foo' conflicts with an existing project. See https://pypi.org/help/#project-name for more information."
        );
        let e = too_similar_rejection("toast1ng");
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(
            e.message,
            "The name 'toast1ng' is too similar to an existing project. See https://pypi.org/help/#project-name for more information."
        );
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent(s in "\\PC{0,40}") {
            let once = normalize(&s);
            prop_assert_eq!(normalize(&once), once.clone());
        }

        #[test]
        fn normalize_keeps_valid_names_valid(s in "[A-Za-z0-9]([A-Za-z0-9._-]{0,30}[A-Za-z0-9])?") {
            prop_assert!(is_valid_project_name(&s));
            let n = normalize(&s);
            prop_assert!(is_valid_project_name(&n));
            prop_assert!(!n.contains("--") && !n.contains('_') && !n.contains('.'));
            prop_assert_eq!(n.to_ascii_lowercase(), n.clone());
        }

        #[test]
        fn name_functions_never_panic(s in "\\PC{0,40}") {
            let _ = is_valid_project_name(&s);
            let _ = ultranormalize(&s);
            let _ = check_new_project_name(&s, std::slice::from_ref(&s));
        }
    }
}
