//! The optional TOML configuration file of the service commands (`serve`, `gateway`,
//! `verifier`, `worker`, `migrate`): `--config FILE` or `WHARF_CONFIG=FILE`.
//!
//! Keys are the commands' long flag names (`database-url = "postgres://…"`,
//! `max-file-size = "200MiB"`, `no-trusted-publishing = true`, `prohibited-names = ["a", "b"]`).
//! A setting applies only when neither its flag nor its `WHARF_…` variable is given, so the
//! precedence is flag, then environment, then file, then default. The file becomes flags
//! before clap parses, so it is validated exactly like the command line.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::ConfigError;

/// The commands that read a configuration file.
const CONFIGURABLE: [&str; 5] = ["serve", "gateway", "verifier", "worker", "migrate"];

/// The configuration file named on the command line (`--config FILE`, `--config=FILE`) or by
/// `WHARF_CONFIG`.
fn config_path(arguments: &[OsString]) -> Option<PathBuf> {
    let mut iter = arguments.iter();
    while let Some(argument) = iter.next() {
        let text = argument.to_string_lossy();
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("WHARF_CONFIG").map(PathBuf::from)
}

fn flag_given(arguments: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    let with_value = format!("--{long}=");
    arguments.iter().any(|argument| {
        let text = argument.to_string_lossy();
        text == flag || text.starts_with(&with_value)
    })
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        toml::Value::Float(number) => Some(number.to_string()),
        toml::Value::Boolean(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Turns a configuration file into flags inserted after the subcommand of `argv`.
pub(crate) fn apply(
    argv: Vec<OsString>,
    command: &clap::Command,
) -> Result<Vec<OsString>, ConfigError> {
    let Some(subcommand_name) = argv.get(1).map(|name| name.to_string_lossy().into_owned()) else {
        return Ok(argv);
    };
    if !CONFIGURABLE.contains(&subcommand_name.as_str()) {
        return Ok(argv);
    }
    let Some(path) = config_path(&argv[2..]) else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path).map_err(|error| {
        ConfigError(format!(
            "cannot read the configuration file {}: {error}",
            path.display()
        ))
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|error| ConfigError(format!("{} is not valid TOML: {error}", path.display())))?;
    let Some(subcommand) = command.find_subcommand(&subcommand_name) else {
        return Ok(argv);
    };

    let mut inserted: Vec<OsString> = Vec::new();
    for (key, value) in &table {
        let argument = subcommand
            .get_arguments()
            .find(|argument| argument.get_long() == Some(key.as_str()) && key != "config")
            .ok_or_else(|| {
                ConfigError(format!(
                    "unknown setting '{key}' in {} (settings are the long flags of `wharf {subcommand_name}`)",
                    path.display()
                ))
            })?;
        let env_given = argument
            .get_env()
            .is_some_and(|name| std::env::var_os(name).is_some());
        if flag_given(&argv[2..], key) || env_given {
            continue;
        }
        let takes_value = argument.get_action().takes_values();
        match value {
            toml::Value::Boolean(enabled) if !takes_value => {
                if *enabled {
                    inserted.push(format!("--{key}").into());
                }
            }
            toml::Value::Array(items) => {
                let items: Option<Vec<String>> = items.iter().map(scalar).collect();
                let items = items.ok_or_else(|| {
                    ConfigError(format!(
                        "'{key}' in {} must be a list of values",
                        path.display()
                    ))
                })?;
                inserted.push(format!("--{key}={}", items.join(",")).into());
            }
            other => {
                let text = scalar(other).filter(|_| takes_value).ok_or_else(|| {
                    ConfigError(format!("'{key}' in {} has the wrong type", path.display()))
                })?;
                inserted.push(format!("--{key}={text}").into());
            }
        }
    }
    let mut result = argv;
    let rest = result.split_off(2);
    result.extend(inserted);
    result.extend(rest);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn argv(arguments: &[&str]) -> Vec<OsString> {
        arguments.iter().map(OsString::from).collect()
    }

    fn with_file(contents: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wharf.toml");
        std::fs::write(&path, contents).expect("write config");
        let path = path.display().to_string();
        (dir, path)
    }

    #[test]
    fn file_settings_become_flags_after_the_subcommand() {
        let (_dir, path) = with_file(
            "max-file-size = \"200MiB\"\nno-trusted-publishing = true\nprohibited-names = [\"a\", \"b\"]\nworker-concurrency = 4\n",
        );
        let command = crate::Cli::command();
        let expanded =
            apply(argv(&["wharf", "serve", "--config", &path]), &command).expect("apply");
        let expanded: Vec<String> = expanded
            .iter()
            .map(|argument| argument.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&expanded[..2], ["wharf", "serve"]);
        for flag in [
            "--max-file-size=200MiB",
            "--no-trusted-publishing",
            "--prohibited-names=a,b",
            "--worker-concurrency=4",
        ] {
            assert!(
                expanded.contains(&flag.to_owned()),
                "{flag} in {expanded:?}"
            );
        }
        // And clap accepts the result.
        assert!(command.try_get_matches_from(expanded).is_ok());
    }

    #[test]
    fn a_flag_on_the_command_line_wins() {
        let (_dir, path) = with_file("max-file-size = \"200MiB\"\n");
        let expanded = apply(
            argv(&[
                "wharf",
                "serve",
                "--max-file-size",
                "1MiB",
                "--config",
                &path,
            ]),
            &crate::Cli::command(),
        )
        .expect("apply");
        assert!(
            !expanded
                .iter()
                .any(|argument| argument == "--max-file-size=200MiB")
        );
    }

    #[test]
    fn unknown_settings_and_wrong_types_are_errors() {
        let (_dir, path) = with_file("max-fiel-size = \"1MiB\"\n");
        let error = apply(
            argv(&["wharf", "serve", "--config", &path]),
            &crate::Cli::command(),
        )
        .expect_err("unknown key");
        assert!(
            error.0.contains("unknown setting 'max-fiel-size'"),
            "{}",
            error.0
        );
        let (_dir, path) = with_file("no-trusted-publishing = \"yes\"\n");
        assert!(
            apply(
                argv(&["wharf", "serve", "--config", &path]),
                &crate::Cli::command()
            )
            .is_err()
        );
        let (_dir, path) = with_file("listen = [1, {}]\n");
        assert!(
            apply(
                argv(&["wharf", "gateway", "--config", &path]),
                &crate::Cli::command()
            )
            .is_err()
        );
    }

    #[test]
    fn other_commands_and_no_file_leave_argv_alone() {
        let original = argv(&["wharf", "admin", "user", "create", "x"]);
        assert_eq!(
            apply(original.clone(), &crate::Cli::command()).expect("apply"),
            original
        );
        let original = argv(&["wharf", "serve", "--listen", "127.0.0.1:1"]);
        if std::env::var_os("WHARF_CONFIG").is_none() {
            assert_eq!(
                apply(original.clone(), &crate::Cli::command()).expect("apply"),
                original
            );
        }
    }
}
