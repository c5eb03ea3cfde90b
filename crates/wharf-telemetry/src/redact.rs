//! A wrapper for secrets (API tokens, OIDC JWTs, macaroons, keys): its `Debug` and
//! `Display` never show the value, so a secret recorded as a span field or a log field by
//! mistake shows as `[redacted]`. The value is reachable only through [`Redacted::expose`].

/// A secret value that formats as `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    /// Wraps a secret.
    pub fn new(secret: T) -> Redacted<T> {
        Redacted(secret)
    }

    /// The secret itself, for the code that must use it (never for formatting).
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(secret: T) -> Redacted<T> {
        Redacted(secret)
    }
}

impl<T> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> std::fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_formats() {
        let secret = Redacted::new("pypi-AgEIcHlwaS5vcmc".to_owned());
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "pypi-AgEIcHlwaS5vcmc");
    }

    #[test]
    fn a_secret_recorded_in_a_span_field_is_redacted() {
        use crate::CapturedLog;
        use tracing_subscriber::layer::SubscriberExt;

        let captured = CapturedLog::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(captured.clone()),
        );
        let jwt = Redacted::new("eyJhbGciOiJSUzI1NiJ9.e30.c2ln".to_owned());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("exchange", token = %jwt);
            let _entered = span.enter();
            tracing::info!(token = ?jwt, "exchanging");
        });
        let output = captured.text();
        assert!(output.contains("[redacted]"), "{output}");
        assert!(!output.contains("eyJ"), "{output}");
    }
}
