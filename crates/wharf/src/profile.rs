//! `--profile private|public` (`WHARF_PROFILE`, TOML `profile`): the defaults of the abuse
//! limits of a public index.
//!
//! A private registry's users are trusted: out of the box they may publish in bulk (a
//! migration of a hundred projects in one `twine upload`). The public profile turns on PyPI's
//! limits for new projects, uploads and token exchanges. A limit's own flag always wins over
//! the profile. Limits every server needs (token exchanges and burns per client IP, body,
//! form and connection limits) are on in both profiles.

use clap::{Args, ValueEnum};

/// Which defaults the abuse limits take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Profile {
    /// A registry of trusted users: no limits on new projects, uploads or exchanges per
    /// identity.
    #[default]
    Private,
    /// A public index: PyPI's abuse limits.
    Public,
}

/// The defaults of the abuse limits under one profile (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbuseDefaults {
    /// `--upload-rate-limit`, uploads per client IP a `--rate-limit-window`.
    pub(crate) upload_per_ip: u32,
    /// `--upload-token-rate-limit`, uploads per API token a `--rate-limit-window`.
    pub(crate) upload_per_token: u32,
    /// `--new-project-rate-limit`, projects one user creates an hour (PyPI: 20).
    pub(crate) new_project_per_user: u32,
    /// `--new-project-ip-rate-limit`, projects created from one client IP an hour (PyPI: 40).
    pub(crate) new_project_per_ip: u32,
    /// `--mint-token-identity-rate-limit`, exchanges per OIDC identity a minute.
    pub(crate) mint_per_identity: u32,
}

impl Profile {
    /// The abuse limits' defaults under this profile.
    pub(crate) const fn abuse_defaults(self) -> AbuseDefaults {
        match self {
            Profile::Private => AbuseDefaults {
                upload_per_ip: 0,
                upload_per_token: 0,
                new_project_per_user: 0,
                new_project_per_ip: 0,
                mint_per_identity: 0,
            },
            Profile::Public => AbuseDefaults {
                upload_per_ip: 1200,
                upload_per_token: 600,
                new_project_per_user: 20,
                new_project_per_ip: 40,
                mint_per_identity: 60,
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Profile::Private => "private",
            Profile::Public => "public",
        }
    }
}

/// The profile flag of the commands that enforce abuse limits (`serve`, `gateway`,
/// `verifier`).
#[derive(Debug, Clone, Args)]
pub(crate) struct ProfileArgs {
    /// Defaults of the abuse limits: `private` (trusted users, bulk publishing works) or
    /// `public` (PyPI's limits on new projects, uploads and exchanges); a limit's own flag
    /// wins over it.
    #[arg(long, env = "WHARF_PROFILE", value_enum, default_value_t = Profile::Private)]
    pub(crate) profile: Profile,
}

impl ProfileArgs {
    /// Logs the profile at start.
    pub(crate) fn announce(&self) {
        tracing::info!(profile = self.profile.name(), "abuse-limit profile");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use wharf_index::RateLimit;

    use crate::args::{UploadArgs, VerifierPolicyArgs};

    use super::*;

    /// The flags the profile resolves against, as `wharf serve` has them.
    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        upload: UploadArgs,
        #[command(flatten)]
        verifier: VerifierPolicyArgs,
    }

    const HOUR: i64 = 3_600_000_000;
    const MINUTE: i64 = 60_000_000;

    /// `requests` a `window`.
    fn per(requests: u32, window: i64) -> Option<RateLimit> {
        Some(RateLimit::per_window(requests, window))
    }

    /// Every limit the profile touches, and the two per-IP token limits it must not.
    fn limits(arguments: &[&str]) -> [Option<RateLimit>; 7] {
        let flags =
            Flags::try_parse_from(std::iter::once("wharf").chain(arguments.iter().copied()))
                .expect("flags");
        let profile = flags.profile.profile;
        let gateway = flags.upload.settings(profile).expect("gateway settings");
        let verifier = flags.verifier.settings(profile).expect("verifier settings");
        let rates = gateway.rate_limits;
        [
            rates.upload_per_ip,
            rates.upload_per_token,
            rates.new_project_per_user,
            rates.new_project_per_ip,
            verifier.oidc.identity_rate_limit,
            rates.mint_per_ip,
            rates.burn_per_ip,
        ]
    }

    #[test]
    fn private_is_the_default_and_leaves_only_the_per_ip_token_limits() {
        let private = [
            None,
            None,
            None,
            None,
            None,
            per(120, MINUTE),
            per(120, MINUTE),
        ];
        assert_eq!(limits(&[]), private);
        assert_eq!(limits(&["--profile", "private"]), private);
    }

    #[test]
    fn public_turns_on_pypis_abuse_limits() {
        assert_eq!(
            limits(&["--profile", "public"]),
            [
                per(1200, MINUTE),
                per(600, MINUTE),
                per(20, HOUR),
                per(40, HOUR),
                per(60, MINUTE),
                per(120, MINUTE),
                per(120, MINUTE),
            ]
        );
    }

    #[test]
    fn a_limits_own_flag_wins_over_either_profile() {
        // Turned on under the private profile.
        let private = limits(&["--new-project-rate-limit", "5", "--upload-rate-limit=7"]);
        assert_eq!(private[0], per(7, MINUTE));
        assert_eq!(private[2], per(5, HOUR));
        assert_eq!(private[3], None);
        // Turned off (0) or changed under the public profile.
        let public = limits(&[
            "--profile=public",
            "--new-project-rate-limit=0",
            "--mint-token-identity-rate-limit",
            "3",
        ]);
        assert_eq!(public[2], None);
        assert_eq!(public[3], per(40, HOUR));
        assert_eq!(public[4], per(3, MINUTE));
        // The per-IP token limits are not the profile's.
        let off = limits(&["--mint-token-rate-limit=0", "--burn-token-rate-limit=0"]);
        assert_eq!((off[5], off[6]), (None, None));
    }

    #[test]
    fn an_unknown_profile_is_refused() {
        let error = Flags::try_parse_from(["wharf", "--profile", "open"]).expect_err("refused");
        assert!(error.to_string().contains("private"), "{error}");
    }
}

#[cfg(test)]
mod file_tests {
    use clap::CommandFactory;

    #[test]
    fn the_configuration_file_sets_the_profile_of_each_limiting_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wharf.toml");
        std::fs::write(&path, "profile = \"public\"\n").expect("write config");
        let path = path.display().to_string();
        for command in ["serve", "gateway", "verifier"] {
            let argv = ["wharf", command, "--config", &path].map(std::ffi::OsString::from);
            let expanded =
                crate::config_file::apply(argv.to_vec(), &crate::Cli::command()).expect("apply");
            assert!(
                expanded
                    .iter()
                    .any(|argument| argument == "--profile=public"),
                "{command}: {expanded:?}"
            );
        }
    }
}
