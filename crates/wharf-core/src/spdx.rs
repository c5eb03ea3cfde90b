//! SPDX license expressions, validated and canonicalized as `packaging.licenses` does.

use crate::spdx_data::{EXCEPTIONS, LICENSES};

const MAX_PARENTHESIS_DEPTH: usize = 200;

fn lookup(table: &'static [(&'static str, &'static str)], lower: &str) -> Option<&'static str> {
    table
        .binary_search_by(|(k, _)| (*k).cmp(lower))
        .ok()
        .and_then(|i| table.get(i))
        .map(|(_, id)| *id)
}

fn is_operator(t: &str) -> bool {
    matches!(t, "or" | "and" | "with" | "(" | ")")
}

fn syntax_ok(tokens: &[String]) -> bool {
    let mut depth = 0usize;
    let mut expect_operand = true;
    for t in tokens {
        match t.as_str() {
            "(" => {
                if !expect_operand || depth >= MAX_PARENTHESIS_DEPTH {
                    return false;
                }
                depth += 1;
            }
            ")" => {
                if expect_operand || depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            "or" | "and" | "with" => {
                if expect_operand {
                    return false;
                }
                expect_operand = true;
            }
            _ => {
                if !expect_operand {
                    return false;
                }
                expect_operand = false;
            }
        }
    }
    !expect_operand && depth == 0
}

/// Validates a `License-Expression` and returns its canonical form (`mit or apache-2.0` →
/// `MIT OR Apache-2.0`); the error text is the one `packaging` raises.
pub fn canonicalize_license_expression(raw: &str) -> Result<String, String> {
    let invalid = || format!("Invalid license expression: {}", crate::pyrepr::repr(raw));
    if raw.is_empty() {
        return Err(invalid());
    }
    let spaced = raw.replace('(', " ( ").replace(')', " ) ");
    let mut tokens = Vec::new();
    let mut refs: Vec<(String, String)> = Vec::new();
    for word in spaced.split_whitespace() {
        let lower = word.to_lowercase();
        if lower.starts_with("licenseref-") {
            if !word.is_ascii() {
                return Err(format!(
                    "Invalid licenseref (non-ASCII): {}",
                    crate::pyrepr::repr(word)
                ));
            }
            if !refs.iter().any(|(k, _)| *k == lower) {
                refs.push((
                    lower.clone(),
                    format!("LicenseRef-{}", &word["LicenseRef-".len()..]),
                ));
            }
        }
        tokens.push(lower);
    }
    if !syntax_ok(&tokens) {
        return Err(invalid());
    }
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut last_license_start = false;
    for (i, token) in tokens.iter().enumerate() {
        if is_operator(token) {
            if token == "with"
                && (!last_license_start || tokens.get(i + 1).is_none_or(|next| is_operator(next)))
            {
                return Err(invalid());
            }
            out.push(token.to_uppercase());
            last_license_start = false;
            continue;
        }
        if out.last().is_some_and(|t| t == "WITH") {
            let Some(id) = lookup(&EXCEPTIONS, token) else {
                return Err(format!(
                    "Unknown license exception: {}",
                    crate::pyrepr::repr(token)
                ));
            };
            out.push(id.to_owned());
            last_license_start = false;
        } else {
            let (base, suffix) = match token.strip_suffix('+') {
                Some(b) => (b, "+"),
                None => (token.as_str(), ""),
            };
            if let Some(ref_id) = base.strip_prefix("licenseref-") {
                let ok = !ref_id.is_empty()
                    && ref_id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                let canonical = refs.iter().find(|(k, _)| k == base).map(|(_, v)| v.clone());
                match (suffix.is_empty() && ok, canonical) {
                    (true, Some(c)) => out.push(c),
                    _ => {
                        return Err(format!(
                            "Invalid licenseref: {}",
                            crate::pyrepr::repr(token)
                        ));
                    }
                }
            } else {
                let Some(id) = lookup(&LICENSES, base) else {
                    return Err(format!("Unknown license: {}", crate::pyrepr::repr(base)));
                };
                out.push(format!("{id}{suffix}"));
            }
            last_license_start = true;
        }
    }
    Ok(out.join(" ").replace("( ", "(").replace(" )", ")"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonicalizes() {
        assert_eq!(canonicalize_license_expression("mit").unwrap(), "MIT");
        assert_eq!(
            canonicalize_license_expression("mit and (apache-2.0 or bsd-2-clause)").unwrap(),
            "MIT AND (Apache-2.0 OR BSD-2-Clause)"
        );
        assert_eq!(
            canonicalize_license_expression("GPL-2.0-or-later WITH classpath-exception-2.0")
                .unwrap(),
            "GPL-2.0-or-later WITH Classpath-exception-2.0"
        );
        assert_eq!(
            canonicalize_license_expression("LicenseRef-Mine.1 OR mit+").unwrap(),
            "LicenseRef-Mine.1 OR MIT+"
        );
        assert_eq!(
            canonicalize_license_expression("licenseref-x").unwrap(),
            "LicenseRef-x"
        );
    }

    #[test]
    fn rejects() {
        assert_eq!(
            canonicalize_license_expression("(mit").unwrap_err(),
            "Invalid license expression: '(mit'"
        );
        assert_eq!(
            canonicalize_license_expression("").unwrap_err(),
            "Invalid license expression: ''"
        );
        assert_eq!(
            canonicalize_license_expression("MIT OR").unwrap_err(),
            "Invalid license expression: 'MIT OR'"
        );
        assert_eq!(
            canonicalize_license_expression("Use-it-after-midnight").unwrap_err(),
            "Unknown license: 'use-it-after-midnight'"
        );
        assert_eq!(
            canonicalize_license_expression("MIT WITH nope").unwrap_err(),
            "Unknown license exception: 'nope'"
        );
        assert!(canonicalize_license_expression("LicenseRef-a_b").is_err());
        assert!(canonicalize_license_expression("LicenseRef-é").is_err());
        assert!(canonicalize_license_expression("MIT MIT").is_err());
        assert!(canonicalize_license_expression("(MIT) WITH x").is_err());
    }

    #[test]
    fn tables_sorted() {
        assert!(LICENSES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(EXCEPTIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    proptest! {
        #[test]
        fn never_panics(s in "[()a-zA-Z0-9 .+-]{0,40}") {
            let _ = canonicalize_license_expression(&s);
        }
    }
}
