//! Operating the embedded registry: `wharf admin check` on the data a running `wharf serve`
//! wrote and on a store damaged behind its back; `wharf admin backup` under a publish load
//! and `wharf admin restore` into a fresh data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use wharf_e2e::dist::{Dist, post_form, sha256_hex};
use wharf_e2e::raw_http::request;
use wharf_e2e::{
    BuiltProject, Registry, files_under, run_failing, run_ok, twine_upload, wharf_binary,
};

/// `wharf admin --data-dir DIR`, for the arguments to follow.
fn admin_on(data_dir: &Path) -> Command {
    let mut command = Command::new(wharf_binary());
    command.arg("admin").arg("--data-dir").arg(data_dir);
    command
}

/// `wharf admin --data-dir DIR check`, which must fail; its output squashed.
fn failing_check(data_dir: &Path) -> String {
    run_failing(admin_on(data_dir).arg("check"))
}

/// The stored file whose name ends with `suffix`, and its object key (`packages/…`).
fn stored(data_dir: &Path, suffix: &str) -> (PathBuf, String) {
    let files = data_dir.join("files");
    let path = files_under(&files.join("packages"))
        .into_iter()
        .find(|path| path.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no stored file ends with {suffix}"));
    let key = path
        .strip_prefix(&files)
        .expect("under the store")
        .to_string_lossy()
        .into_owned();
    (path, key)
}

#[test]
fn admin_check_passes_after_twine_uploads_and_names_each_damaged_file() {
    let registry = Registry::start();
    let token = registry.user_with_token("alice", &[]);
    let project = BuiltProject::build("Check-Demo", "check_demo", "1.0.0", "hello");
    run_ok(&mut twine_upload(&registry, &token, &project.dists()));

    // The wheel, its PEP 658 metadata and the sdist, checked while serve runs.
    let report = registry.admin(&["check"]);
    assert!(
        report.contains("checked 2 file(s): 3 object(s)") && report.ends_with("; 0 problem(s)"),
        "{report}"
    );
    // The same through the explicit flags (`--database-url` and `--store`), as a scaled
    // deployment's operator would point it.
    let data = registry.data_dir();
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let explicit = run_ok(
        admin_on(elsewhere.path())
            .arg("--database-url")
            .arg(format!("sqlite://{}", data.join("index.sqlite3").display()))
            .arg("check")
            .arg("--store")
            .arg(format!("file://{}", data.join("files").display())),
    );
    assert!(explicit.contains("; 0 problem(s)"), "{explicit}");

    // Damage the store: alter the sdist's bytes, delete the wheel, add a stray object.
    let (sdist, sdist_key) = stored(&data, "check_demo-1.0.0.tar.gz");
    let (wheel, wheel_key) = stored(&data, "check_demo-1.0.0-py3-none-any.whl");
    let mut bytes = std::fs::read(&sdist).expect("sdist");
    bytes[100] ^= 0x01;
    std::fs::remove_file(&sdist).expect("remove sdist");
    std::fs::write(&sdist, &bytes).expect("altered sdist");
    std::fs::remove_file(&wheel).expect("remove wheel");
    let stray = data.join("files/packages/00/00/0000/stray-1.0.tar.gz");
    std::fs::create_dir_all(stray.parent().expect("parent")).expect("stray dir");
    std::fs::write(&stray, b"not in the index").expect("stray");

    let output = failing_check(&data);
    for expected in [
        format!("PROBLEM {sdist_key}: sha256 "),
        format!("PROBLEM {sdist_key}: blake2b-256 "),
        format!("PROBLEM {wheel_key}: missing from the store"),
        "PROBLEM packages/00/00/0000/stray-1.0.tar.gz: stored, but no file in the index names it"
            .to_owned(),
        "; 4 problem(s)".to_owned(),
    ] {
        assert!(output.contains(&expected), "no '{expected}' in:\n{output}");
    }

    // A backup of a damaged store fails, and leaves neither the backup nor its partial copy.
    let backups = tempfile::tempdir().expect("temp dir");
    let failed = run_failing(
        admin_on(&data)
            .arg("backup")
            .arg(backups.path().join("nightly")),
    );
    assert!(
        failed.contains(&format!(
            "{wheel_key} is in the index but missing from the store"
        )),
        "{failed}"
    );
    assert_eq!(
        std::fs::read_dir(backups.path()).expect("backups").count(),
        0
    );
}

/// Files `project` lists on the simple JSON page, by filename: their URL paths.
fn listed_files(registry: &Registry, project: &str) -> BTreeMap<String, String> {
    let page = request(
        &registry.url(),
        "GET",
        &format!("/simple/{project}/"),
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
        &[],
    );
    assert_eq!(page.status, 200, "{}", page.text());
    let base = registry.url();
    page.json()["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|file| {
            let url = file["url"].as_str().expect("url");
            let path = url.strip_prefix(&base).unwrap_or(url).to_owned();
            (
                file["filename"].as_str().expect("filename").to_owned(),
                path,
            )
        })
        .collect()
}

/// Uploads `dist`; whether the registry acknowledged it with 200.
fn publish(base_url: &str, token: &str, dist: &Dist) -> bool {
    post_form(base_url, "/legacy/", Some(token), &dist.form(), None).status == 200
}

#[test]
fn backup_under_publish_load_restores_every_acknowledged_file_byte_identical() {
    let registry = Registry::start();
    let token = registry.user_with_token("alice", &[]);
    let base_url = registry.url();
    let mut acknowledged: Vec<Dist> = Vec::new();
    for minor in 0..4 {
        let dist = Dist::wheel("Backup-Demo", &format!("1.{minor}"));
        assert!(publish(&base_url, &token, &dist), "{}", dist.filename);
        acknowledged.push(dist);
    }

    // A publisher that keeps uploading while the backup runs.
    let load_acks: Arc<Mutex<Vec<Dist>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (first_ack, first_ack_seen) = mpsc::channel();
    let publisher = {
        let (acks, stop, base_url, token) = (
            Arc::clone(&load_acks),
            Arc::clone(&stop),
            base_url.clone(),
            token.clone(),
        );
        std::thread::spawn(move || {
            let mut minor = 0;
            while !stop.load(Ordering::SeqCst) {
                let dist = Dist::wheel("Backup-Load", &format!("2.{minor}"));
                minor += 1;
                if publish(&base_url, &token, &dist) {
                    acks.lock().expect("acks").push(dist);
                    let _ = first_ack.send(());
                }
            }
        })
    };
    first_ack_seen
        .recv_timeout(Duration::from_secs(60))
        .expect("the publisher's first upload is acknowledged");
    acknowledged.extend(load_acks.lock().expect("acks").iter().cloned());

    let backups = tempfile::tempdir().expect("temp dir");
    let backup_dir = backups.path().join("nightly");
    let output = registry.admin(&["backup", &backup_dir.to_string_lossy()]);
    assert!(output.contains("backed up "), "{output}");
    assert!(output.contains("token key"), "{output}");
    stop.store(true, Ordering::SeqCst);
    publisher.join().expect("publisher");
    // Nothing but the finished backup is left beside it.
    let left: Vec<_> = std::fs::read_dir(backups.path())
        .expect("backups")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["nightly"]);

    // A running registry's data directory is refused.
    let refused = run_failing(
        admin_on(&registry.data_dir())
            .arg("restore")
            .arg(&backup_dir),
    );
    assert!(refused.contains("is in use"), "{refused}");

    let fresh = tempfile::tempdir().expect("temp dir");
    let restored_data = fresh.path().join("data");
    let restored = run_ok(admin_on(&restored_data).arg("restore").arg(&backup_dir));
    assert!(restored.contains("checked"), "{restored}");
    // Restoring again into the now non-empty directory needs --force.
    let not_empty = run_failing(admin_on(&restored_data).arg("restore").arg(&backup_dir));
    assert!(not_empty.contains("is not empty"), "{not_empty}");
    let forced = run_ok(
        admin_on(&restored_data)
            .args(["restore", "--force"])
            .arg(&backup_dir),
    );
    assert!(forced.contains("checked"), "{forced}");

    let copy = Registry::start_on(fresh);
    let mut listed = listed_files(&copy, "backup-demo");
    listed.extend(listed_files(&copy, "backup-load"));
    for dist in &acknowledged {
        let path = listed
            .get(&dist.filename)
            .unwrap_or_else(|| panic!("{} is missing after the restore", dist.filename));
        let download = request(&copy.url(), "GET", path, &[], &[]);
        assert_eq!(download.status, 200, "{path}");
        assert_eq!(
            sha256_hex(&download.body),
            dist.sha256(),
            "{}",
            dist.filename
        );
    }
    let check = copy.admin(&["check"]);
    assert!(check.ends_with("; 0 problem(s)"), "{check}");
    // The token key came back too: the old token still publishes.
    let after = Dist::wheel("Backup-Demo", "3.0");
    assert!(publish(&copy.url(), &token, &after));
}

#[test]
fn a_second_serve_on_a_data_dir_in_use_is_refused() {
    let registry = Registry::start();
    let second = run_failing(
        Command::new(wharf_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(registry.data_dir()),
    );
    assert!(second.contains("is in use"), "{second}");
    assert!(second.contains("serve.lock"), "{second}");
}
