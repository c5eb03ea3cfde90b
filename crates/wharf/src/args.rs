//! Flag groups shared by `serve` and the separate service processes, each defined once.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use wharf_app::{BusSettings, StoreSettings};
use wharf_blob::S3Options;
use wharf_gateway::{GatewaySettings, RateLimits};
use wharf_index::RateLimit;
use wharf_verifier::{OidcSettings, VerifierSettings};
use wharf_worker::WorkerSettings;

use crate::ConfigError;
use crate::profile::Profile;
use crate::units::{parse_duration, parse_size};

/// The optional configuration file (read before parsing, see `config_file`).
#[derive(Debug, Clone, Args)]
pub(crate) struct ConfigArgs {
    /// TOML file of settings, keyed by long flag name; flags and WHARF_ variables win over it.
    #[arg(long, env = "WHARF_CONFIG")]
    config: Option<PathBuf>,
}

impl ConfigArgs {
    /// Logs which configuration file the settings came from, if any.
    pub(crate) fn announce(&self) {
        if let Some(path) = &self.config {
            tracing::info!(path = %path.display(), "settings from the configuration file");
        }
    }
}

/// Upload limits and links (the gateway's settings).
#[derive(Debug, Clone, Args)]
pub(crate) struct UploadArgs {
    /// Base URL of this registry as clients reach it, for absolute links; set it in
    /// production (default: from each request's authority, `:authority` or Host).
    #[arg(long, env = "WHARF_PUBLIC_URL")]
    public_url: Option<String>,
    /// Build absolute links from X-Forwarded-Host and X-Forwarded-Proto (their last entry),
    /// as set by a trusted reverse proxy; without it they are ignored (clients can forge them).
    #[arg(long, env = "WHARF_TRUST_FORWARDED_HEADERS")]
    trust_forwarded_headers: bool,
    /// Largest accepted distribution file (PyPI: 100MiB).
    #[arg(long, env = "WHARF_MAX_FILE_SIZE", default_value = "100MiB", value_parser = parse_size)]
    max_file_size: u64,
    /// Largest total size of one project (PyPI: 10GiB).
    #[arg(long, env = "WHARF_MAX_PROJECT_SIZE", default_value = "10GiB", value_parser = parse_size)]
    max_project_size: u64,
    /// How long an upload waits for the storage worker's answer.
    #[arg(long, env = "WHARF_UPLOAD_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    upload_timeout: Duration,
    /// Uploads allowed per client IP in each --rate-limit-window, shared by every gateway on
    /// one index database (0: no limit; default by --profile: private 0, public 1200).
    #[arg(long, env = "WHARF_UPLOAD_RATE_LIMIT")]
    upload_rate_limit: Option<u32>,
    /// Uploads allowed per API token in each --rate-limit-window (0: no limit; default by
    /// --profile: private 0, public 600).
    #[arg(long, env = "WHARF_UPLOAD_TOKEN_RATE_LIMIT")]
    upload_token_rate_limit: Option<u32>,
    /// Trusted-publishing token exchanges allowed per client IP in each --rate-limit-window
    /// (0: no limit).
    #[arg(long, env = "WHARF_MINT_TOKEN_RATE_LIMIT", default_value_t = 120)]
    mint_token_rate_limit: u32,
    /// Trusted-publishing token burns allowed per client IP in each --rate-limit-window
    /// (0: no limit).
    #[arg(long, env = "WHARF_BURN_TOKEN_RATE_LIMIT", default_value_t = 120)]
    burn_token_rate_limit: u32,
    /// Projects one user may create per hour (0: no limit; default by --profile: private 0,
    /// public 20 as PyPI).
    #[arg(long, env = "WHARF_NEW_PROJECT_RATE_LIMIT")]
    new_project_rate_limit: Option<u32>,
    /// Projects that may be created from one client IP per hour (0: no limit; default by
    /// --profile: private 0, public 40 as PyPI).
    #[arg(long, env = "WHARF_NEW_PROJECT_IP_RATE_LIMIT")]
    new_project_ip_rate_limit: Option<u32>,
    /// The window of the upload and token rate limits; the allowance refills evenly over it.
    #[arg(long, env = "WHARF_RATE_LIMIT_WINDOW", default_value = "60s", value_parser = parse_duration)]
    rate_limit_window: Duration,
    /// Header a trusted reverse proxy sets to the client address (e.g. X-Forwarded-For; its
    /// last entry counts). Unset: the connection's peer address; never set it without such
    /// a proxy, or clients choose their own address.
    #[arg(long, env = "WHARF_CLIENT_IP_HEADER")]
    client_ip_header: Option<String>,
    /// Write one INFO line per request under the log target wharf::access: method, route
    /// template (never the query string or a header), status, duration, bytes sent, client
    /// IP and the trace id of X-Wharf-Trace-Id.
    #[arg(long, env = "WHARF_ACCESS_LOG")]
    access_log: bool,
    /// Most parts (fields and the file) in one upload form.
    #[arg(long, env = "WHARF_MAX_FORM_PARTS", default_value_t = 1000)]
    max_form_parts: usize,
    /// Refuse an upload (408) whose client sends no body bytes for this long.
    #[arg(long, env = "WHARF_BODY_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    body_idle_timeout: Duration,
    /// Close a connection whose request headers are not complete after this long, or with no
    /// request in flight for as long (HTTP/1 keep-alive and HTTP/2).
    #[arg(long, env = "WHARF_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Answer 408 to a request (any but an upload) not answered within this long, its body
    /// included.
    #[arg(long, env = "WHARF_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Refuse an upload (408) whose body arrives slower than this many bytes a second, over
    /// each --body-idle-timeout.
    #[arg(long, env = "WHARF_UPLOAD_MIN_RATE", default_value = "1KiB", value_parser = parse_size)]
    upload_min_rate: u64,
    /// Connections served at once; one more closes the oldest idle connection, else the oldest
    /// (default: the file limit, raised to its hard limit, less an eighth kept for the
    /// database and the store).
    #[arg(long, env = "WHARF_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
}

impl UploadArgs {
    /// The gateway's public listener on `listen`, with these connection limits.
    pub(crate) fn listener(
        &self,
        listen: std::net::SocketAddr,
        tls: Option<axum_server::tls_rustls::RustlsConfig>,
    ) -> wharf_app::PublicListener {
        wharf_app::PublicListener {
            listen,
            tls,
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
        }
    }

    /// The rate limits, after checking the flags; `profile` gives the abuse limits' defaults.
    fn rate_limits(&self, profile: Profile) -> Result<RateLimits, ConfigError> {
        let defaults = profile.abuse_defaults();
        let window = i64::try_from(self.rate_limit_window.as_micros())
            .ok()
            .filter(|window| *window > 0)
            .ok_or_else(|| ConfigError("--rate-limit-window must be positive".to_owned()))?;
        let limit_in = |requests: u32, window: i64| {
            (requests > 0).then(|| RateLimit::per_window(requests, window))
        };
        let limit = |requests: u32| limit_in(requests, window);
        let hourly = |requests: u32| limit_in(requests, 3_600_000_000);
        let client_ip_header = self
            .client_ip_header
            .as_deref()
            .map(|name| {
                http::HeaderName::try_from(name).map_err(|_| {
                    ConfigError(format!("--client-ip-header '{name}' is not a header name"))
                })
            })
            .transpose()?;
        Ok(RateLimits {
            upload_per_ip: limit(self.upload_rate_limit.unwrap_or(defaults.upload_per_ip)),
            upload_per_token: limit(
                self.upload_token_rate_limit
                    .unwrap_or(defaults.upload_per_token),
            ),
            mint_per_ip: limit(self.mint_token_rate_limit),
            burn_per_ip: limit(self.burn_token_rate_limit),
            new_project_per_user: hourly(
                self.new_project_rate_limit
                    .unwrap_or(defaults.new_project_per_user),
            ),
            new_project_per_ip: hourly(
                self.new_project_ip_rate_limit
                    .unwrap_or(defaults.new_project_per_ip),
            ),
            client_ip_header,
        })
    }

    /// The gateway settings, after checking the flags.
    pub(crate) fn settings(&self, profile: Profile) -> Result<GatewaySettings, ConfigError> {
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError(format!(
                "--public-url must start with http:// or https://, got '{url}'"
            )));
        }
        if self.max_form_parts == 0
            || self.body_idle_timeout.is_zero()
            || self.header_read_timeout.is_zero()
            || self.request_timeout.is_zero()
            || self.max_connections == Some(0)
        {
            return Err(ConfigError(
                "--max-form-parts, --body-idle-timeout, --header-read-timeout, --request-timeout \
                 and --max-connections must be positive"
                    .to_owned(),
            ));
        }
        Ok(GatewaySettings {
            max_file_size: self.max_file_size,
            max_project_size: self.max_project_size,
            outcome_timeout: self.upload_timeout,
            public_url: self.public_url.clone(),
            trust_forwarded_headers: self.trust_forwarded_headers,
            rate_limits: self.rate_limits(profile)?,
            max_form_parts: self.max_form_parts,
            body_idle_timeout: self.body_idle_timeout,
            request_timeout: self.request_timeout,
            upload_min_rate: self.upload_min_rate,
            access_log: self.access_log,
            ..GatewaySettings::default()
        })
    }
}

/// HTTPS for a listener.
#[derive(Debug, Clone, Args)]
pub(crate) struct TlsArgs {
    /// PEM certificate chain for HTTPS (with --tls-key); plain HTTP when unset.
    #[arg(long, env = "WHARF_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with --tls-cert).
    #[arg(long, env = "WHARF_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The rustls configuration, or `None` for plain HTTP.
    pub(crate) fn load(
        &self,
    ) -> Result<Option<axum_server::tls_rustls::RustlsConfig>, ConfigError> {
        self.load_requiring_clients(None)
    }

    /// Like [`TlsArgs::load`], but when `client_ca` is given only clients holding a
    /// certificate it signed may connect (mutual TLS).
    pub(crate) fn load_requiring_clients(
        &self,
        client_ca: Option<&std::path::Path>,
    ) -> Result<Option<axum_server::tls_rustls::RustlsConfig>, ConfigError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        crate::tls::server_config(cert, key, client_ca).map(Some)
    }
}

/// Who may create what, and trusted publishing (the verifier's settings).
#[derive(Debug, Clone, Args)]
pub(crate) struct VerifierPolicyArgs {
    /// Comma-separated project names nobody may create.
    #[arg(long, env = "WHARF_PROHIBITED_NAMES", value_delimiter = ',')]
    prohibited_names: Vec<String>,
    /// The audience OIDC tokens must carry for trusted publishing (PyPI: `pypi`). Give two
    /// registries side by side different audiences so they refuse each other's tokens.
    #[arg(long, env = "WHARF_OIDC_AUDIENCE", default_value = "wharf")]
    oidc_audience: String,
    /// Lifetime of tokens minted by trusted publishing, unless a publisher sets its own.
    #[arg(long, env = "WHARF_OIDC_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    oidc_token_ttl: Duration,
    /// The longest lifetime a publisher may give its minted tokens.
    #[arg(long, env = "WHARF_OIDC_MAX_TOKEN_TTL", default_value = "6h", value_parser = parse_duration)]
    oidc_max_token_ttl: Duration,
    /// Turn trusted publishing off (the /_/oidc endpoints then refuse).
    #[arg(long, env = "WHARF_NO_TRUSTED_PUBLISHING")]
    no_trusted_publishing: bool,
    /// Trusted-publishing exchanges allowed per identity (issuer and `sub`, e.g. one CI
    /// repository and ref) per minute, refilling evenly, shared through the index; a `429`
    /// with `Retry-After` beyond it (0: no limit; default by --profile: private 0, public 60).
    #[arg(long, env = "WHARF_MINT_TOKEN_IDENTITY_RATE_LIMIT")]
    mint_token_identity_rate_limit: Option<u32>,
}

impl VerifierPolicyArgs {
    /// The verifier settings, after checking the flags; `profile` gives the abuse limits'
    /// defaults.
    pub(crate) fn settings(&self, profile: Profile) -> Result<VerifierSettings, ConfigError> {
        let mint_per_identity = self
            .mint_token_identity_rate_limit
            .unwrap_or(profile.abuse_defaults().mint_per_identity);
        if self.oidc_token_ttl > self.oidc_max_token_ttl {
            return Err(ConfigError(
                "--oidc-token-ttl must not exceed --oidc-max-token-ttl".to_owned(),
            ));
        }
        Ok(VerifierSettings {
            prohibited_names: self
                .prohibited_names
                .iter()
                .map(|name| wharf_core::name::normalize(name))
                .collect(),
            oidc: OidcSettings {
                enabled: !self.no_trusted_publishing,
                audience: self.oidc_audience.clone(),
                default_token_ttl: self.oidc_token_ttl,
                max_token_ttl: self.oidc_max_token_ttl,
                identity_rate_limit: (mint_per_identity > 0)
                    .then(|| wharf_index::RateLimit::per_window(mint_per_identity, 60_000_000)),
                ..OidcSettings::default()
            },
            // Set by `wharf verifier` from its key file; `serve` makes its own.
            upload_grants: None,
            // Replaced by the caller with the keys of --token-key-file (TokenKeyArgs).
            token_keys: wharf_verifier::TokenKeys::default(),
        })
    }
}

/// How the storage worker works.
#[derive(Debug, Clone, Args)]
pub(crate) struct WorkerPolicyArgs {
    /// Uploads the storage worker processes at the same time.
    #[arg(long, env = "WHARF_WORKER_CONCURRENCY", default_value_t = 2)]
    worker_concurrency: usize,
    /// Refuse new files in releases older than this (PyPI: 14d); off when unset.
    #[arg(long, env = "WHARF_CLOSE_RELEASES_AFTER", value_parser = parse_duration)]
    close_releases_after: Option<Duration>,
    /// Delete staged uploads older than this (left by a gateway that crashed before queueing
    /// them); must exceed the gateways' --upload-timeout.
    #[arg(long, env = "WHARF_STAGING_MAX_AGE", default_value = "15m", value_parser = parse_duration)]
    staging_max_age: Duration,
    /// How often workers sweep staging.
    #[arg(long, env = "WHARF_STAGING_SWEEP_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    staging_sweep_interval: Duration,
}

impl WorkerPolicyArgs {
    /// The worker settings, after checking the flags.
    pub(crate) fn settings(&self) -> Result<WorkerSettings, ConfigError> {
        if self.worker_concurrency == 0 {
            return Err(ConfigError(
                "--worker-concurrency must be at least 1".to_owned(),
            ));
        }
        if self.staging_sweep_interval.is_zero() {
            return Err(ConfigError(
                "--staging-sweep-interval must be positive".to_owned(),
            ));
        }
        Ok(WorkerSettings {
            concurrency: self.worker_concurrency,
            closed_release_after: self.close_releases_after,
            staging_max_age: self.staging_max_age,
            staging_sweep_every: self.staging_sweep_interval,
            ..WorkerSettings::default()
        })
    }
}

/// Where published files live.
#[derive(Debug, Clone, Args)]
pub(crate) struct StoreArgs {
    /// Object store URL: `file:///dir`, `s3://bucket[/prefix]` or `memory://`; default: the
    /// data directory's `files/`.
    #[arg(long = "store", env = "WHARF_STORE")]
    store: Option<String>,
    /// S3-compatible endpoint (default: AWS, or `AWS_ENDPOINT_URL`).
    #[arg(long, env = "WHARF_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region (default: `AWS_REGION`).
    #[arg(long, env = "WHARF_S3_REGION")]
    s3_region: Option<String>,
    /// Allow a plain-HTTP S3 endpoint (a local server).
    #[arg(long, env = "WHARF_S3_ALLOW_HTTP")]
    s3_allow_http: bool,
    /// Address buckets by path (`endpoint/bucket`), as most S3-compatible servers want.
    #[arg(long, env = "WHARF_S3_PATH_STYLE")]
    s3_path_style: bool,
}

impl StoreArgs {
    /// Where the store is (`data_dir/files` when no URL is given).
    pub(crate) fn settings(&self, data_dir: &std::path::Path) -> StoreSettings {
        match &self.store {
            Some(url) => StoreSettings::Url {
                url: url.clone(),
                s3: S3Options {
                    endpoint: self.s3_endpoint.clone(),
                    region: self.s3_region.clone(),
                    allow_http: self.s3_allow_http,
                    path_style: self.s3_path_style,
                },
            },
            None => wharf_app::adapters::local_store_in(data_dir),
        }
    }
}

/// The NATS JetStream bus.
#[derive(Debug, Clone, Args)]
pub(crate) struct NatsArgs {
    /// NATS server URL.
    #[arg(long, env = "WHARF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Prefix of every subject and stream name, so registries can share a NATS server.
    #[arg(long, env = "WHARF_NATS_PREFIX", default_value = "wharf")]
    nats_prefix: String,
    #[command(flatten)]
    security: crate::trust::NatsSecurityArgs,
}

impl NatsArgs {
    /// The NATS bus these flags name.
    pub(crate) fn settings(&self) -> BusSettings {
        BusSettings::Nats {
            url: self.nats_url.clone(),
            prefix: self.nats_prefix.clone(),
            security: self.security.settings(),
        }
    }
}

/// Where the token key lives: the keys that seal every API token's root key, kept outside
/// the database so that a copy of it forges nothing (issue #12, finding 12).
#[derive(Debug, Clone, Args)]
pub(crate) struct TokenKeyArgs {
    /// File of the token keys (`<key id> <base64url key>` a line, the first one seals; kept
    /// out of the database's backups). Default for `serve` and the admin commands on SQLite:
    /// `<data-dir>/token-key`, created on first use with mode 0600; `wharf verifier` and the
    /// admin commands on PostgreSQL need it.
    #[arg(long, env = "WHARF_TOKEN_KEY_FILE")]
    pub(crate) token_key_file: Option<PathBuf>,
}

impl TokenKeyArgs {
    /// The token key file these flags name; `default` is used (and created if missing) when
    /// none is given, and without a default the flag is required.
    pub(crate) fn path(&self, default: Option<PathBuf>) -> Result<(PathBuf, bool), ConfigError> {
        match (&self.token_key_file, default) {
            (Some(path), _) => Ok((path.clone(), false)),
            (None, Some(default)) => Ok((default, true)),
            (None, None) => Err(ConfigError(
                "--token-key-file (WHARF_TOKEN_KEY_FILE) is required: the file of the keys that \
                 seal API tokens' root keys (create one with `wharf admin token-key create \
                 --token-key-file FILE`)"
                    .to_owned(),
            )),
        }
    }

    /// Loads the token keys, creating the default file if it is used and missing.
    pub(crate) fn load(
        &self,
        default: Option<PathBuf>,
    ) -> Result<wharf_verifier::TokenKeys, ConfigError> {
        let (path, is_default) = self.path(default)?;
        let loaded = if is_default {
            wharf_verifier::TokenKeys::from_file_or_create(&path).map(|(keys, created)| {
                if created {
                    tracing::info!(path = %path.display(), "created the token key file");
                }
                keys
            })
        } else {
            wharf_verifier::TokenKeys::from_file(&path)
        };
        loaded.map_err(|error| ConfigError(error.to_string()))
    }
}

/// The embedded mode's token key file: beside the database in the data directory, never in it.
pub(crate) fn default_token_key_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("token-key")
}
