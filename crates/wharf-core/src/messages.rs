//! PyPI's words for its refusals, each written once (spec §a.2–a.9, §b.3). Every service takes
//! the text of a refusal from here, so a change of wording is one edit and two services never
//! disagree on it. Texts Wharf adds where PyPI has none say so.

/// A missing, malformed or unknown API token (PyPI's `invalid-auth`).
pub const INVALID_AUTH: &str = "Invalid or non-existent authentication information. \
     See https://pypi.org/help/#invalid-auth for more information.";

/// Basic authentication with a user name other than `__token__`.
pub const PASSWORD_AUTH: &str = "Username/Password authentication is no longer supported. \
     Migrate to API Tokens or Trusted Publishers instead. \
     See https://pypi.org/help/#apitoken and https://pypi.org/help/#trusted-publishers";

/// A trusted publisher's token for a project that does not exist.
pub const NON_USER_CREATE: &str = "Non-user identities cannot create new projects. This was \
     probably caused by successfully using a pending publisher but specifying the project name \
     incorrectly (either in the publisher or in your project's metadata). Please ensure that \
     both match.";

/// The declared digests do not match the uploaded bytes.
pub const DIGEST_MISMATCH: &str =
    "The digest supplied does not match a digest calculated from the uploaded file.";

/// A filename that a deleted file used (filenames are unique forever).
pub const FILENAME_REUSED: &str = "This filename was previously used by a file that has since \
     been deleted. Use a different version. \
     See https://pypi.org/help/#file-name-reuse for more information.";

/// A second sdist for one release.
pub const ONE_SDIST_PER_RELEASE: &str = "Only one sdist may be uploaded per release.";

/// An `attestations` field (PEP 740) on an upload that is not trusted-published (Warehouse
/// `attestations/services.py`, `_extract_attestations_from_request`, reported by
/// `forklift/legacy.py`, `file_upload`).
pub const ATTESTATIONS_NEED_TRUSTED_PUBLISHING: &str = "Invalid attestations supplied during \
     upload: Attestations are only supported when using Trusted Publishing";

/// A wheel whose METADATA cannot be parsed.
pub fn unparseable_metadata(reason: &str) -> String {
    format!("Invalid distribution file. Unparseable METADATA: {reason}")
}

/// Wharf's words (PyPI has none): the staged bytes of an upload were lost before the worker
/// stored them (they expired, or were not the size the gateway announced).
pub const STAGED_BYTES_LOST: &str =
    "The uploaded bytes were lost before they could be stored; please upload again.";

/// Wharf's words (PyPI has none): the worker gave up storing an upload after its retries.
pub const STORE_FAILED: &str = "The upload could not be stored right now; please try again later.";

/// Wharf's words (PyPI has none): something the request needs cannot be reached; `what` is
/// e.g. "The index".
pub fn unavailable(what: &str) -> String {
    format!("{what} is unavailable right now; please try again later.")
}

/// A user without a role on the project.
pub fn user_not_allowed(user: &str, project: &str) -> String {
    format!(
        "The user '{user}' isn't allowed to upload to project '{project}'. \
         See https://pypi.org/help/#project-name for more information."
    )
}

/// A trusted publisher's token for a project it may not upload to (archived, quarantined).
pub fn token_not_allowed(project: &str) -> String {
    format!(
        "The given token isn't allowed to upload to project '{project}'. \
         See https://pypi.org/help/#project-name for more information."
    )
}

/// Other bytes under a filename that already exists.
pub fn file_exists(filename: &str, blake2_256_digest: &str) -> String {
    format!(
        "File already exists ('{filename}', with blake2_256 hash '{blake2_256_digest}'). \
         See https://pypi.org/help/#file-name-reuse for more information."
    )
}

/// A file that would take the project over its total size limit (`limit` bytes).
pub fn project_too_large(project: &str, limit: u64) -> String {
    format!(
        "Project size too large. Limit for project '{project}' total size is {}. \
         See https://pypi.org/help/#project-size-limit for more information.",
        size_limit(limit)
    )
}

/// A size limit in PyPI's units (binary multiples, written `GB`, `MB` as PyPI writes them):
/// the largest unit the limit is a whole number of, so it never reads "0 GB" (PyPI's own
/// limits, whole GiB or MiB, read as PyPI prints them: "10 GB", "100 MB").
pub fn size_limit(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")];
    UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
        .map_or_else(
            || format!("{bytes} bytes"),
            |(unit, name)| format!("{} {name}", bytes / unit),
        )
}

/// A new file for a release older than the closed-release window.
pub fn release_closed(days: u64) -> String {
    format!("Uploading new files to releases older than {days} days is not allowed.")
}

/// Trusted publishing's refusals (spec §b.3): each of PyPI's mint-token texts with its code.
pub mod trusted_publishing {
    use crate::refusal::{ErrorCode, Refusal};

    /// `rate-limited` (Wharf's own; PyPI has no such limit): too many exchanges for one
    /// identity; try again in `retry_after` seconds.
    pub fn rate_limited(retry_after: u64) -> Refusal {
        let unit = if retry_after == 1 {
            "second"
        } else {
            "seconds"
        };
        Refusal::rate_limited(
            format!(
                "Too many token requests for this identity. Try again in {retry_after} {unit}."
            ),
            retry_after,
        )
    }

    /// `invalid-payload` / `malformed JWT`.
    pub fn malformed_jwt() -> Refusal {
        Refusal::new(ErrorCode::InvalidPayload, "malformed JWT")
    }

    /// `invalid-payload` / `unknown trusted publishing issuer`.
    pub fn unknown_issuer() -> Refusal {
        Refusal::new(
            ErrorCode::InvalidPayload,
            "unknown trusted publishing issuer",
        )
    }

    /// `invalid-payload` with a free text (pydantic-style body errors, project-creation errors).
    pub fn invalid_payload(description: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::InvalidPayload, description)
    }

    /// `not-enabled` / `<service> trusted publishing functionality not enabled`.
    pub fn not_enabled(service: &str) -> Refusal {
        Refusal::new(
            ErrorCode::NotEnabled,
            format!("{service} trusted publishing functionality not enabled"),
        )
    }

    /// `invalid-token` / `malformed or invalid token`.
    pub fn invalid_token() -> Refusal {
        Refusal::new(ErrorCode::InvalidToken, "malformed or invalid token")
    }

    /// `invalid-pending-publisher` / `valid token, but project already exists`.
    pub fn project_already_exists() -> Refusal {
        Refusal::new(
            ErrorCode::InvalidPendingPublisher,
            "valid token, but project already exists",
        )
    }

    /// `invalid-reuse-token` / `invalid token: already used`.
    pub fn reused_token() -> Refusal {
        Refusal::new(ErrorCode::InvalidReuseToken, "invalid token: already used")
    }

    /// `invalid-publisher` / `valid token, but no corresponding publisher (<reason>)`.
    pub fn invalid_publisher(reason: &str) -> Refusal {
        Refusal::new(
            ErrorCode::InvalidPublisher,
            format!("valid token, but no corresponding publisher ({reason})"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_pypis() {
        assert_eq!(
            user_not_allowed("alice", "demo"),
            "The user 'alice' isn't allowed to upload to project 'demo'. \
             See https://pypi.org/help/#project-name for more information."
        );
        assert_eq!(
            file_exists("a-1.tar.gz", "ab"),
            "File already exists ('a-1.tar.gz', with blake2_256 hash 'ab'). \
             See https://pypi.org/help/#file-name-reuse for more information."
        );
        assert_eq!(
            release_closed(14),
            "Uploading new files to releases older than 14 days is not allowed."
        );
        assert!(NON_USER_CREATE.contains("incorrectly (either in the publisher"));
        assert_eq!(
            unparseable_metadata("bad header"),
            "Invalid distribution file. Unparseable METADATA: bad header"
        );
    }

    #[test]
    fn trusted_publishing_texts_are_pypis() {
        use super::trusted_publishing as tp;
        use crate::refusal::ErrorCode;
        assert_eq!(tp::malformed_jwt().to_string(), "malformed JWT");
        assert_eq!(
            tp::unknown_issuer().to_string(),
            "unknown trusted publishing issuer"
        );
        assert_eq!(
            tp::not_enabled("github").to_string(),
            "github trusted publishing functionality not enabled"
        );
        assert_eq!(
            tp::invalid_token().to_string(),
            "malformed or invalid token"
        );
        assert_eq!(
            tp::project_already_exists().to_string(),
            "valid token, but project already exists"
        );
        assert_eq!(
            tp::reused_token().to_string(),
            "invalid token: already used"
        );
        let refusal = tp::invalid_publisher("Missing claim 'sub'");
        assert_eq!(refusal.code, ErrorCode::InvalidPublisher);
        assert_eq!(
            refusal.message,
            "valid token, but no corresponding publisher (Missing claim 'sub')"
        );
        let limited = tp::rate_limited(1);
        assert_eq!(limited.retry_after, Some(1));
        assert_eq!(
            limited.message,
            "Too many token requests for this identity. Try again in 1 second."
        );
    }

    #[test]
    fn size_limits_never_read_zero() {
        assert_eq!(size_limit(10 << 30), "10 GB");
        assert_eq!(size_limit(1 << 30), "1 GB");
        assert_eq!(size_limit(1 << 20), "1 MB");
        assert_eq!(size_limit(100 << 20), "100 MB");
        assert_eq!(size_limit(1536 << 20), "1536 MB");
        assert_eq!(size_limit(1000), "1000 bytes");
        assert_eq!(size_limit(64 << 10), "64 KB");
        assert_eq!(size_limit(0), "0 bytes");
        assert_eq!(
            project_too_large("demo", 1 << 20),
            "Project size too large. Limit for project 'demo' total size is 1 MB. \
             See https://pypi.org/help/#project-size-limit for more information."
        );
    }
}
