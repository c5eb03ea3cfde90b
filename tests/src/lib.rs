//! Harness for the end-to-end tests: starts real `wharf` processes on free ports with their
//! own data directories, and runs the real Python clients (twine, uv, pip, build, pypitoken)
//! from the pinned virtual environment that `make test` installs in `tests/.venv`.
//!
//! Nothing here is skipped when a tool is missing: a missing binary or venv is a test failure
//! that says how to get it.

#![allow(clippy::print_stderr)] // Test diagnostics go to stderr, where cargo shows them.

pub mod cluster;
pub mod dist;
pub mod oidc_issuer;
pub mod otlp_receiver;
pub mod raw_http;
pub mod tls;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `wharf` binary under test: `$WHARF_BIN`, else `target/release/wharf`, else
/// `target/debug/wharf`.
pub fn wharf_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WHARF_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    for profile in ["release", "debug"] {
        let candidate = target.join(profile).join("wharf");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "no wharf binary found: run `cargo build --release -p wharf` (make test does) or set WHARF_BIN"
    );
}

/// A tool from the tests' virtual environment (`tests/.venv/bin/<name>`).
pub fn venv_tool(name: &str) -> PathBuf {
    let path = workspace_root().join("tests/.venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make test` (it creates tests/.venv from tests/python/requirements.txt)",
        path.display()
    );
    path
}

/// Collapses runs of whitespace (clients wrap long server messages) so a test can look for a
/// message regardless of where a client broke its lines.
pub fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs a command to completion, capturing its output.
pub fn run(command: &mut Command) -> Output {
    let description = format!("{command:?}");
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {description}: {error}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let description = format!("{command:?}");
    let output = run(command);
    assert!(
        output.status.success(),
        "{description} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The combined stdout and stderr of a command that must fail, whitespace squashed.
pub fn run_failing(command: &mut Command) -> String {
    let description = format!("{command:?}");
    let output = run(command);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.status.success(),
        "{description} succeeded but should have failed:\n{text}"
    );
    squash(&text)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A running `wharf serve` with its own data directory; stopped (SIGTERM) on drop.
#[derive(Debug)]
pub struct Registry {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    port: u16,
    log_path: PathBuf,
    /// Serving HTTPS (`--tls-cert` given): URLs are `https://`, readiness is a TCP connect.
    tls: bool,
}

impl Registry {
    /// Starts `wharf serve` with extra flags and waits until `/readyz` answers 200.
    pub fn start_with(extra_args: &[&str]) -> Registry {
        Registry::start_in(
            tempfile::tempdir().expect("temp dir"),
            extra_args,
            &[],
            None,
        )
    }

    /// Starts `wharf serve` with extra flags under a file limit of `files` (soft and hard,
    /// set by util-linux `prlimit`), and waits until `/readyz` answers 200.
    pub fn start_with_file_limit(files: u64, extra_args: &[&str]) -> Registry {
        Registry::start_in(
            tempfile::tempdir().expect("temp dir"),
            extra_args,
            &[],
            Some(files),
        )
    }

    /// Starts `wharf serve` with extra flags and extra environment variables (on top of the
    /// inherited environment), and waits until `/readyz` answers 200.
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Registry {
        Registry::start_in(
            tempfile::tempdir().expect("temp dir"),
            extra_args,
            env,
            None,
        )
    }

    /// Starts `wharf serve` on a prepared `dir` (its `data` subdirectory holds the registry,
    /// e.g. one `wharf admin restore` wrote) and waits until `/readyz` answers 200.
    pub fn start_on(dir: tempfile::TempDir) -> Registry {
        Registry::start_in(dir, &[], &[], None)
    }

    /// Starts `wharf serve` on `data_dir` (its `data` subdirectory holds the registry).
    fn start_in(
        mut data_dir: tempfile::TempDir,
        extra_args: &[&str],
        env: &[(&str, &str)],
        file_limit: Option<u64>,
    ) -> Registry {
        let log_path = data_dir.path().join("serve.log");
        let tls = extra_args
            .iter()
            .any(|arg| *arg == "--tls-cert" || arg.starts_with("--tls-cert="));
        // A port taken between probing and binding makes the server exit; try a few.
        for _attempt in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(&log_path).expect("log file");
            // `prlimit` sets the limit and execs the server (same process).
            let mut command = match file_limit {
                Some(files) => {
                    let mut command = Command::new("prlimit");
                    command
                        .arg(format!("--nofile={files}:{files}"))
                        .arg("--")
                        .arg(wharf_binary());
                    command
                }
                None => Command::new(wharf_binary()),
            };
            let child = command
                .arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(data_dir.path().join("data"))
                .args(extra_args)
                .env("RUST_LOG", "info")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start wharf serve");
            let mut registry = Registry {
                child: Some(child),
                data_dir,
                port,
                log_path: log_path.clone(),
                tls,
            };
            if registry.wait_ready(Duration::from_secs(30)) {
                return registry;
            }
            registry.stop();
            data_dir = registry.take_dir();
        }
        panic!(
            "wharf serve did not become ready; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// Starts `wharf serve` over HTTPS with `ca`'s server certificate, plus `extra_args`.
    pub fn start_tls(ca: &tls::TestCa, extra_args: &[&str]) -> Registry {
        let tls_args = ca.serve_args();
        let mut args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
        args.extend_from_slice(extra_args);
        Registry::start_with(&args)
    }

    /// Starts `wharf serve` with the default settings.
    pub fn start() -> Registry {
        Registry::start_with(&[])
    }

    /// Stops this registry (SIGTERM, as [`Registry::stop`]) and starts a new `wharf serve`
    /// with `extra_args` on the same data directory.
    pub fn restart_with(mut self, extra_args: &[&str]) -> Registry {
        if !self.stop() {
            eprintln!(
                "wharf serve did not stop cleanly before the restart; log:\n{}",
                self.log()
            );
        }
        Registry::start_in(self.take_dir(), extra_args, &[], None)
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        let placeholder = tempfile::tempdir().expect("temp dir");
        self.child = None;
        std::mem::replace(&mut self.data_dir, placeholder)
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if self.tls {
                // ureq is built without TLS here: a listening socket is the readiness signal
                // (the server binds only once its index is open).
                let address = SocketAddr::from(([127, 0, 0, 1], self.port));
                if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                    return true;
                }
            } else if let Ok(response) = ureq::get(&format!("{}/readyz", self.url())).call()
                && response.status() == 200
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `http://127.0.0.1:<port>` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>`, the address the server listens on.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The upload URL (`…/legacy/`).
    pub fn upload_url(&self) -> String {
        format!("{}/legacy/", self.url())
    }

    /// The simple index URL (`…/simple/`).
    pub fn index_url(&self) -> String {
        format!("{}/simple/", self.url())
    }

    /// The data directory the server uses.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.path().join("data")
    }

    /// The audit trail: `(kind, detail)` of every event in the registry's index, oldest
    /// first.
    pub fn audit_events(&self) -> Vec<(String, serde_json::Value)> {
        let output = run_ok(
            Command::new(venv_tool("python"))
                .args([
                    "-c",
                    "import json, sqlite3, sys\n\
                     db = sqlite3.connect(sys.argv[1])\n\
                     rows = db.execute('SELECT kind, detail FROM audit_events ORDER BY id').fetchall()\n\
                     json.dump(rows, sys.stdout)",
                ])
                .arg(self.data_dir().join("index.sqlite3")),
        );
        let rows: Vec<(String, String)> = serde_json::from_str(&output).expect("audit rows");
        rows.into_iter()
            .map(|(kind, detail)| {
                let detail = serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null);
                (kind, detail)
            })
            .collect()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Runs `wharf admin <args>` against this registry's data; returns stdout (trimmed).
    pub fn admin(&self, args: &[&str]) -> String {
        run_ok(
            Command::new(wharf_binary())
                .arg("admin")
                .arg("--data-dir")
                .arg(self.data_dir())
                .args(args),
        )
        .trim()
        .to_owned()
    }

    /// Creates a user and returns a fresh API token for it.
    pub fn user_with_token(&self, user: &str, token_args: &[&str]) -> String {
        self.admin(&["user", "create", user]);
        let mut args = vec!["token", "create", "--user", user];
        args.extend_from_slice(token_args);
        self.admin(&args)
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if !self.stop() {
            eprintln!("wharf serve did not stop cleanly; log:\n{}", self.log());
        }
    }
}

/// Every regular file under `dir` (recursively); empty if `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// A small Python project built into a wheel and an sdist with the real `build` frontend.
#[derive(Debug)]
pub struct BuiltProject {
    dir: tempfile::TempDir,
}

impl BuiltProject {
    /// Writes a setuptools project `name` `version` whose module `import_name` has
    /// `hello()` returning `greeting`, and builds it (no network: `--no-isolation`).
    pub fn build(name: &str, import_name: &str, version: &str, greeting: &str) -> BuiltProject {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("src").join(import_name)).expect("package dir");
        std::fs::write(
            root.join("pyproject.toml"),
            format!(
                "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
                 [project]\nname = \"{name}\"\nversion = \"{version}\"\ndescription = \"Wharf end-to-end fixture\"\n\
                 requires-python = \">=3.8\"\nreadme = {{ text = \"Fixture for {name}\", content-type = \"text/plain\" }}\n"
            ),
        )
        .expect("pyproject");
        let mut module =
            std::fs::File::create(root.join("src").join(import_name).join("__init__.py"))
                .expect("module");
        writeln!(module, "def hello():\n    return {greeting:?}").expect("module text");
        run_ok(
            Command::new(venv_tool("python"))
                .args(["-m", "build", "--no-isolation", "--outdir"])
                .arg(root.join("dist"))
                .arg(root)
                .env("SOURCE_DATE_EPOCH", "1700000000"),
        );
        BuiltProject { dir }
    }

    /// The built distribution files (wheel and sdist), sorted.
    pub fn dists(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("dist"))
            .expect("dist dir")
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect();
        files.sort();
        files
    }

    /// The built wheel.
    pub fn wheel(&self) -> PathBuf {
        self.dists()
            .into_iter()
            .find(|path| path.extension().is_some_and(|extension| extension == "whl"))
            .expect("a wheel was built")
    }
}

/// `twine upload` of `files` to `registry` with `token`.
pub fn twine_upload(registry: &Registry, token: &str, files: &[PathBuf]) -> Command {
    let mut command = Command::new(venv_tool("twine"));
    command
        .args([
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
        ])
        .arg(registry.upload_url())
        .args(["--username", "__token__", "--password", token])
        .args(files)
        .env("TWINE_NON_INTERACTIVE", "1");
    command
}

/// For each of `dists`, a `<filename>.publish.attestation` in `dir` holding a JSON object
/// (no real PEP 740 attestation: what `twine upload --attestations` reads and sends).
pub fn attestation_files(dir: &Path, dists: &[PathBuf]) -> Vec<PathBuf> {
    dists
        .iter()
        .map(|dist| {
            let name = dist.file_name().expect("a file name").to_string_lossy();
            let path = dir.join(format!("{name}.publish.attestation"));
            std::fs::write(
                &path,
                r#"{"version": 1, "verification_material": {}, "envelope": {}}"#,
            )
            .expect("write the attestation");
            path
        })
        .collect()
}

/// `uv publish` of `files` to `registry` with `token`.
pub fn uv_publish(registry: &Registry, token: &str, files: &[PathBuf]) -> Command {
    let mut command = Command::new(venv_tool("uv"));
    command
        .args(["publish", "--publish-url"])
        .arg(registry.upload_url())
        .args(["--token", token])
        .args(files)
        .env("UV_NO_CACHE", "1");
    command
}

/// A fresh virtual environment made by the stdlib's `venv` (with pip).
pub fn fresh_venv() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    run_ok(
        Command::new(venv_tool("python"))
            .args(["-m", "venv"])
            .arg(dir.path().join("venv")),
    );
    dir
}

/// An HTTP agent that returns non-2xx responses instead of errors and follows no redirects.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}
