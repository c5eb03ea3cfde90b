//! Tracing set-up shared by every Wharf service: an `EnvFilter` from `RUST_LOG` (default
//! `info`), human-readable lines on stderr, or JSON lines with `WHARF_LOG_FORMAT=json`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event, with the span context.
    Json,
}

impl LogFormat {
    /// Reads `WHARF_LOG_FORMAT` (`json` or `text`, default `text`).
    pub fn from_env() -> LogFormat {
        match std::env::var("WHARF_LOG_FORMAT") {
            Ok(value) if value.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// Keeps telemetry alive; dropping it flushes what is buffered.
#[derive(Debug)]
pub struct TelemetryGuard {
    service_name: String,
}

impl TelemetryGuard {
    /// The service name telemetry reports.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }
}

/// Installs the global subscriber for `service_name`. Call once, first thing in `main`.
pub fn init(service_name: &str) -> TelemetryGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match LogFormat::from_env() {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    if result.is_err() {
        tracing::debug!("a global tracing subscriber was already installed");
    }
    TelemetryGuard {
        service_name: service_name.to_owned(),
    }
}
