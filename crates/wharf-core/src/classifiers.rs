//! Trove classifiers known to PyPI (embedded from the `trove-classifiers` package).

use crate::classifiers_data::{ALL_CLASSIFIERS, DEPRECATED_CLASSIFIERS};

/// Tells whether `classifier` is a known trove classifier (deprecated ones included).
pub fn is_known_classifier(classifier: &str) -> bool {
    ALL_CLASSIFIERS.binary_search(&classifier).is_ok()
        || DEPRECATED_CLASSIFIERS
            .binary_search_by(|(c, _)| c.cmp(&classifier))
            .is_ok()
}

/// Returns the replacements of a deprecated classifier (possibly none), or `None` when the
/// classifier is not deprecated.
pub fn deprecated_replacements(classifier: &str) -> Option<&'static [&'static str]> {
    DEPRECATED_CLASSIFIERS
        .binary_search_by(|(c, _)| c.cmp(&classifier))
        .ok()
        .and_then(|i| DEPRECATED_CLASSIFIERS.get(i))
        .map(|(_, repl)| *repl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted() {
        assert!(ALL_CLASSIFIERS.windows(2).all(|w| w[0] < w[1]));
        assert!(DEPRECATED_CLASSIFIERS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn lookups() {
        assert!(is_known_classifier("Programming Language :: Python :: 3"));
        assert!(is_known_classifier(
            "License :: OSI Approved :: MIT License"
        ));
        assert!(!is_known_classifier("Programming Language :: Cobol :: 99"));
        assert!(!is_known_classifier("programming language :: python :: 3"));
        assert_eq!(
            deprecated_replacements("Programming Language :: Python :: 3"),
            None
        );
        let (dep, repl) = DEPRECATED_CLASSIFIERS[0];
        assert!(is_known_classifier(dep));
        assert_eq!(deprecated_replacements(dep), Some(repl));
    }
}
