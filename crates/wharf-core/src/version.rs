//! PEP 440 versions, as PyPI normalizes and compares them.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A PEP 440 version.
#[derive(Debug, Clone)]
pub struct Version(pep440_rs::Version);

impl Version {
    /// Parses a PEP 440 version (leading `v`, any case and surrounding whitespace accepted).
    pub fn parse(s: &str) -> Result<Version, String> {
        pep440_rs::Version::from_str(s.trim())
            .map(Version)
            .map_err(|e| e.to_string())
    }

    /// Returns the normalized string (`str(Version)`), e.g. `v1.0` → `1.0`, `1.0-9` → `1.0.post9`.
    pub fn normalized(&self) -> String {
        self.0.to_string()
    }

    /// Returns `packaging.utils.canonicalize_version`: the normalized form with trailing zero
    /// release segments removed, so `1.0` and `1.0.0` give the same `1`.
    pub fn canonical(&self) -> String {
        let release = self.0.release();
        let keep = release.iter().rposition(|&n| n != 0).map_or(1, |i| i + 1);
        let trimmed = self
            .0
            .clone()
            .with_release(release[..keep.min(release.len())].to_vec());
        trimmed.to_string()
    }

    /// Tells whether this is a pre-release (alpha, beta, rc or dev).
    pub fn is_prerelease(&self) -> bool {
        self.0.any_prerelease()
    }

    /// Tells whether this is a post-release.
    pub fn is_postrelease(&self) -> bool {
        self.0.is_post()
    }

    /// Tells whether the version has a local segment (`+…`).
    pub fn is_local(&self) -> bool {
        self.0.is_local()
    }

    /// Returns the release segments.
    pub fn release(&self) -> &[u64] {
        self.0.release()
    }

    /// Returns the underlying `pep440_rs` version.
    pub fn as_pep440(&self) -> &pep440_rs::Version {
        &self.0
    }
}

impl FromStr for Version {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn normalizes_like_packaging() {
        for (raw, norm) in [
            ("v1.0", "1.0"),
            ("V1.0", "1.0"),
            ("1.0-9", "1.0.post9"),
            ("1.02.3", "1.2.3"),
            ("1.0RC1", "1.0rc1"),
            ("1.0.alpha2", "1.0a2"),
            ("1.0-dev3", "1.0.dev3"),
            ("1!2.0", "1!2.0"),
            ("1.0+Local.7", "1.0+local.7"),
            (" 1.0 ", "1.0"),
            ("1.0.post", "1.0.post0"),
        ] {
            assert_eq!(v(raw).normalized(), norm, "{raw}");
        }
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "dog",
            "1.0.dev.a1",
            "0.0.4test1",
            "1.o-9",
            "",
            "1.0.*",
            "1..0",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn canonical_strips_trailing_zeros() {
        assert_eq!(v("1.0.0").canonical(), "1");
        assert_eq!(v("1.0").canonical(), "1");
        assert_eq!(v("1.4.0.0.0").canonical(), "1.4");
        assert_eq!(v("1.0.1").canonical(), "1.0.1");
        assert_eq!(v("0.0").canonical(), "0");
        assert_eq!(v("1.0.0rc1").canonical(), "1rc1");
        assert_eq!(v("2!1.0.post1").canonical(), "2!1.post1");
        assert_eq!(v("1.0+abc").canonical(), "1+abc");
    }

    #[test]
    fn flags() {
        assert!(v("1.0a1").is_prerelease());
        assert!(v("1.0.dev1").is_prerelease());
        assert!(!v("1.0.post1").is_prerelease());
        assert!(v("1.0.post1").is_postrelease());
        assert!(v("1.0-9").is_postrelease());
        assert!(v("1.0+local").is_local());
        assert!(!v("1.0").is_local());
        assert_eq!(v("1.2.3").release(), &[1, 2, 3]);
    }

    #[test]
    fn ordering_and_equality() {
        assert_eq!(v("1.0"), v("1.0.0"));
        assert!(v("1.0a1") < v("1.0"));
        assert!(v("1.0.dev1") < v("1.0a1"));
        assert!(v("1.0") < v("1.0.post1"));
        assert!(v("1.0") < v("1!0.1"));
        assert_eq!("1.0".parse::<Version>().unwrap().to_string(), "1.0");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,30}") {
            let _ = Version::parse(&s);
        }

        #[test]
        fn normalized_round_trips(
            epoch in 0u64..3, rel in proptest::collection::vec(0u64..200, 1..5),
            pre in proptest::option::of((0usize..3, 0u64..20)),
            post in proptest::option::of(0u64..20), dev in proptest::option::of(0u64..20),
        ) {
            let mut s = String::new();
            if epoch > 0 { s.push_str(&format!("{epoch}!")); }
            s.push_str(&rel.iter().map(u64::to_string).collect::<Vec<_>>().join("."));
            if let Some((k, n)) = pre { s.push_str(&format!("{}{n}", ["a", "b", "rc"][k])); }
            if let Some(n) = post { s.push_str(&format!(".post{n}")); }
            if let Some(n) = dev { s.push_str(&format!(".dev{n}")); }
            let parsed = Version::parse(&s).unwrap();
            prop_assert_eq!(parsed.normalized(), s.clone());
            let again = Version::parse(&parsed.normalized()).unwrap();
            prop_assert_eq!(&again, &parsed);
            let canon = Version::parse(&parsed.canonical()).unwrap();
            prop_assert_eq!(canon, parsed);
        }
    }
}
