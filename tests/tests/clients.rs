//! The embedded registry driven end to end by the real clients: publish with `twine upload`
//! and `uv publish`, install with `pip install` and `uv pip install`, and the refusals a
//! publisher meets (taken filenames, bad, restricted and expired tokens).

use std::process::Command;
use std::time::Duration;

use wharf_e2e::{
    BuiltProject, Registry, fresh_venv, run_failing, run_ok, twine_upload, uv_publish, venv_tool,
};

/// A fresh virtual environment made by `uv venv`; answers its directory and its python.
fn uv_venv() -> (tempfile::TempDir, std::path::PathBuf) {
    let uv_env = tempfile::tempdir().expect("temp dir");
    let uv_python = uv_env.path().join("venv/bin/python");
    run_ok(
        Command::new(venv_tool("uv"))
            .args(["venv", "--no-cache", "--python"])
            .arg(venv_tool("python"))
            .arg(uv_env.path().join("venv")),
    );
    (uv_env, uv_python)
}

#[test]
fn publish_with_twine_and_uv_then_install_with_pip_and_uv() {
    let registry = Registry::start();
    let token = registry.user_with_token("alice", &[]);

    let first = BuiltProject::build("Wharf-Demo", "wharf_demo", "0.1.0", "hello from 0.1.0");
    run_ok(&mut twine_upload(&registry, &token, &first.dists()));
    let second = BuiltProject::build("wharf-demo", "wharf_demo", "0.2.0", "hello from 0.2.0");
    run_ok(&mut uv_publish(&registry, &token, &second.dists()));

    // pip, from the simple index, the older release pinned.
    let pip_env = fresh_venv();
    let python = pip_env.path().join("venv/bin/python");
    run_ok(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--index-url",
            ])
            .arg(registry.index_url())
            .arg("wharf-demo==0.1.0"),
    );
    let greeting =
        run_ok(Command::new(&python).args(["-c", "import wharf_demo; print(wharf_demo.hello())"]));
    assert_eq!(greeting.trim(), "hello from 0.1.0");

    // uv, from the same index, the latest release.
    let (_uv_env, uv_python) = uv_venv();
    run_ok(
        Command::new(venv_tool("uv"))
            .args(["pip", "install", "--no-cache", "--python"])
            .arg(&uv_python)
            .arg("--index-url")
            .arg(registry.index_url())
            .arg("wharf-demo"),
    );
    let greeting = run_ok(
        Command::new(&uv_python).args(["-c", "import wharf_demo; print(wharf_demo.hello())"]),
    );
    assert_eq!(greeting.trim(), "hello from 0.2.0");

    // The display name follows the latest upload's spelling, as on PyPI.
    let projects = registry.admin(&["project", "list"]);
    assert!(projects.contains("wharf-demo"), "{projects}");
}

#[test]
fn identical_reupload_succeeds_and_changed_bytes_are_refused() {
    let registry = Registry::start();
    let token = registry.user_with_token("bob", &[]);
    let project = BuiltProject::build("same-name", "same_name", "1.0", "original");
    run_ok(&mut twine_upload(&registry, &token, &project.dists()));

    // The very same files again: a no-op success.
    run_ok(&mut twine_upload(&registry, &token, &project.dists()));
    run_ok(&mut uv_publish(&registry, &token, &[project.wheel()]));

    // Different bytes under the taken filename.
    let changed = BuiltProject::build("same-name", "same_name", "1.0", "changed");
    assert_eq!(
        changed.wheel().file_name(),
        project.wheel().file_name(),
        "the rebuilt wheel must reuse the filename"
    );
    let output = run_failing(&mut twine_upload(&registry, &token, &[changed.wheel()]));
    assert!(output.contains("400"), "{output}");
    assert!(output.contains("File already exists"), "{output}");

    let output = run_failing(&mut uv_publish(&registry, &token, &[changed.wheel()]));
    assert!(output.contains("File already exists"), "{output}");
}

#[test]
fn a_bad_token_is_refused_with_403() {
    let registry = Registry::start();
    registry.user_with_token("carol", &[]);
    let project = BuiltProject::build("bad-token-demo", "bad_token_demo", "1.0", "x");

    let garbage = run_failing(&mut twine_upload(
        &registry,
        "pypi-not-a-real-token",
        &project.dists(),
    ));
    assert!(garbage.contains("403"), "{garbage}");
    assert!(
        garbage.contains("Invalid or non-existent authentication information"),
        "{garbage}"
    );

    // A well-formed token whose signature does not verify: one character inside the
    // signature changed. (Not the last character: in unpadded base64 it may carry only
    // padding bits, which decoders, Python's included, ignore, so the bytes would not change.)
    let token = registry.admin(&["token", "create", "--user", "carol"]);
    let position = token.len() - 10;
    let mut forged: Vec<char> = token.chars().collect();
    forged[position] = if forged[position] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let output = run_failing(&mut uv_publish(&registry, &forged, &project.dists()));
    assert!(output.contains("403"), "{output}");

    // Username/password authentication is gone, as on PyPI.
    let output = run_failing(
        Command::new(venv_tool("twine"))
            .args([
                "upload",
                "--non-interactive",
                "--disable-progress-bar",
                "--repository-url",
            ])
            .arg(registry.upload_url())
            .args(["--username", "carol", "--password", "secret"])
            .args(project.dists()),
    );
    assert!(
        output.contains("Username/Password authentication is no longer supported"),
        "{output}"
    );
}

#[test]
fn a_token_restricted_with_pypitoken_uploads_only_to_its_project() {
    let registry = Registry::start();
    let token = registry.user_with_token("dave", &[]);

    // Attenuate offline with the pypitoken package, as a user would.
    let restricted = run_ok(
        Command::new(venv_tool("python"))
            .args([
                "-c",
                "import sys, pypitoken\n\
                 token = pypitoken.Token.load(sys.argv[1])\n\
                 token.restrict(project_names=['project-a'])\n\
                 print(token.dump())",
            ])
            .arg(&token),
    );
    let restricted = restricted.trim();
    assert_ne!(restricted, token);

    let project_a = BuiltProject::build("project-a", "project_a", "1.0", "a");
    run_ok(&mut twine_upload(&registry, restricted, &project_a.dists()));

    let project_b = BuiltProject::build("project-b", "project_b", "1.0", "b");
    let output = run_failing(&mut twine_upload(&registry, restricted, &project_b.dists()));
    assert!(output.contains("403"), "{output}");
    assert!(
        output.contains(
            "Invalid API Token: project-scoped token is not valid for project: 'project-b'"
        ),
        "{output}"
    );

    // The unrestricted token still reaches project B.
    run_ok(&mut twine_upload(&registry, &token, &project_b.dists()));
}

#[test]
fn an_expired_token_is_refused() {
    let registry = Registry::start();
    let token = registry.user_with_token("erin", &["--expires", "1s"]);
    let project = BuiltProject::build("expiry-demo", "expiry_demo", "1.0", "x");
    std::thread::sleep(Duration::from_millis(2100));
    let output = run_failing(&mut twine_upload(&registry, &token, &project.dists()));
    assert!(output.contains("403"), "{output}");
    assert!(
        output.contains("Invalid API Token: token is expired"),
        "{output}"
    );

    // And a token revoked by the operator stops working at once.
    let token = registry.admin(&["token", "create", "--user", "erin"]);
    let listing = registry.admin(&["token", "list"]);
    let newest_id = listing
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().next())
        .expect("a token id")
        .to_owned();
    registry.admin(&["token", "revoke", &newest_id]);
    let output = run_failing(&mut twine_upload(&registry, &token, &project.dists()));
    assert!(
        output.contains("Invalid or non-existent authentication information"),
        "{output}"
    );
}

#[test]
fn a_user_cannot_upload_to_another_users_project() {
    let registry = Registry::start();
    let owner_token = registry.user_with_token("frank", &[]);
    let other_token = registry.user_with_token("grace", &[]);
    let project = BuiltProject::build("franks-project", "franks_project", "1.0", "x");
    run_ok(&mut twine_upload(
        &registry,
        &owner_token,
        &[project.wheel()],
    ));
    let output = run_failing(&mut twine_upload(&registry, &other_token, &project.dists()));
    assert!(
        output.contains("The user 'grace' isn't allowed to upload to project 'franks-project'"),
        "{output}"
    );
}

#[test]
fn yanked_releases_are_skipped_unless_pinned() {
    let registry = Registry::start();
    let token = registry.user_with_token("heidi", &[]);
    let old = BuiltProject::build("yank-demo", "yank_demo", "1.0", "one");
    let new = BuiltProject::build("yank-demo", "yank_demo", "2.0", "two");
    run_ok(&mut twine_upload(&registry, &token, &old.dists()));
    run_ok(&mut twine_upload(&registry, &token, &new.dists()));
    registry.admin(&["yank", "yank-demo", "2.0", "--reason", "broken build"]);

    let env = fresh_venv();
    let python = env.path().join("venv/bin/python");
    let pip = |spec: &str| {
        run_ok(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--no-cache-dir",
                    "--disable-pip-version-check",
                    "--force-reinstall",
                    "--index-url",
                ])
                .arg(registry.index_url())
                .arg(spec),
        );
        run_ok(Command::new(&python).args(["-c", "import yank_demo; print(yank_demo.hello())"]))
    };
    assert_eq!(pip("yank-demo").trim(), "one");
    assert_eq!(pip("yank-demo==2.0").trim(), "two");
    registry.admin(&["unyank", "yank-demo", "2.0"]);
    assert_eq!(pip("yank-demo").trim(), "two");
}

/// Issue #12, finding 11: uv speaks HTTP/2 to Wharf's own TLS (ALPN `h2`), where the authority
/// travels as `:authority`, not `Host`; the links must still point back at this server, with
/// no `--public-url`.
#[test]
fn uv_installs_over_https_and_http2_without_a_public_url() {
    let ca = wharf_e2e::tls::TestCa::generate();
    let registry = Registry::start_tls(&ca, &[]);
    assert!(registry.url().starts_with("https://"));
    let token = registry.user_with_token("alice", &[]);
    let project = BuiltProject::build("h2-demo", "h2_demo", "1.0.0", "hello over h2");
    run_ok(ca.trust(&mut uv_publish(&registry, &token, &[project.wheel()])));

    let (_uv_env, uv_python) = uv_venv();
    run_ok(
        ca.trust(
            Command::new(venv_tool("uv"))
                .args(["pip", "install", "--no-cache", "--python"])
                .arg(&uv_python)
                .arg("--index-url")
                .arg(registry.index_url())
                .arg("h2-demo"),
        ),
    );
    let greeting =
        run_ok(Command::new(&uv_python).args(["-c", "import h2_demo; print(h2_demo.hello())"]));
    assert_eq!(greeting.trim(), "hello over h2");
}

/// Every byte string of the token rows in `registry`'s SQLite index that could serve as a
/// root key, as a copy of the database holds them: `(token id, candidate)`.
fn token_row_contents(registry: &Registry) -> Vec<(String, Vec<u8>)> {
    let path = registry.data_dir().join("index.sqlite3");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .read_only(true),
        )
        .await
        .expect("the registry's SQLite file");
        let rows: Vec<(String, Vec<u8>, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT id, root_key, sealed_root_key FROM api_tokens")
                .fetch_all(&pool)
                .await
                .expect("token rows");
        pool.close().await;
        let mut candidates = Vec::new();
        for (id, root_key, sealed) in rows {
            candidates.push((id.clone(), root_key));
            if let Some(sealed) = sealed {
                candidates.push((id.clone(), sealed[12..].to_vec()));
                candidates.push((id, sealed));
            }
        }
        candidates
    })
}

/// Waits (bounded) for a `wharf serve` that must refuse to start; answers its stderr.
fn refused_start(command: &mut Command) -> String {
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start wharf serve");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
                .expect("stderr");
            assert_eq!(status.code(), Some(64), "exit status; stderr:\n{stderr}");
            return stderr;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("wharf serve started although its token key is missing");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue #12, finding 12, end to end: `wharf serve` creates its token key file beside the
/// database (mode 0600); nothing in the SQLite file signs a token that uploads; the key is
/// rotated and the old one retired with the admin command while serve runs, and the token
/// created before keeps uploading with twine and uv, also after a restart; without its key
/// file serve refuses to start and says which key is missing.
#[test]
fn the_token_key_rotates_while_serve_runs_and_the_database_forges_nothing() {
    let registry = Registry::start();
    let token = registry.user_with_token("dora", &[]);
    let key_file = registry.data_dir().join("token-key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file)
            .expect("serve created the token key file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let project = |version: &str| {
        BuiltProject::build("key-rotation-demo", "key_rotation_demo", version, version)
    };
    run_ok(&mut twine_upload(
        &registry,
        &token,
        &project("1.0").dists(),
    ));

    // A copy of the database: no byte string of a token row signs a token that uploads.
    let candidates = token_row_contents(&registry);
    assert!(!candidates.is_empty());
    for (id, candidate) in &candidates {
        let forged = wharf_macaroon::Macaroon::new("wharf", id.as_bytes(), candidate);
        let forged = wharf_macaroon::encode_token("pypi", &forged);
        let output = run_failing(&mut twine_upload(
            &registry,
            &forged,
            &project("1.1").dists(),
        ));
        assert!(output.contains("403"), "{output}");
    }

    // Rotation while serve runs: every token keeps working, new ones too.
    let rotated = registry.admin(&["token-key", "rotate"]);
    assert!(rotated.contains("re-sealed 1 token(s)"), "{rotated}");
    run_ok(&mut uv_publish(&registry, &token, &project("2.0").dists()));
    let after_rotation = registry.admin(&["token", "create", "--user", "dora"]);
    let retired = registry.admin(&["token-key", "retire"]);
    assert!(retired.contains("removed token key(s)"), "{retired}");
    let listed = registry.admin(&["token-key", "list"]);
    assert_eq!(listed.lines().count(), 2, "one key left: {listed}");
    run_ok(&mut twine_upload(
        &registry,
        &token,
        &project("3.0").dists(),
    ));
    run_ok(&mut uv_publish(
        &registry,
        &after_rotation,
        &project("3.1").dists(),
    ));
    assert!(
        !registry
            .log()
            .contains(&std::fs::read_to_string(&key_file).expect("key file")[..]),
        "the key file's text is not logged"
    );

    // A restart reads the new file only.
    let registry = registry.restart_with(&[]);
    run_ok(&mut twine_upload(
        &registry,
        &token,
        &project("4.0").dists(),
    ));

    // Without its key file, serve refuses to start and names the key it needs.
    let data_dir = registry.data_dir();
    let mut registry = registry;
    assert!(registry.stop());
    std::fs::rename(&key_file, data_dir.join("token-key.moved")).expect("move the key");
    let stderr = refused_start(
        Command::new(wharf_e2e::wharf_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir),
    );
    assert!(
        stderr.contains("sealed under token key") && stderr.contains("--token-key-file"),
        "{stderr}"
    );
}
