//! Operating the embedded registry: `wharf admin check` on the data a running `wharf serve`
//! wrote, and on a store damaged behind its back.

use std::path::{Path, PathBuf};
use std::process::Command;

use wharf_e2e::{
    BuiltProject, Registry, files_under, run_failing, run_ok, twine_upload, wharf_binary,
};

/// `wharf admin --data-dir DIR check`, which must fail; its output squashed.
fn failing_check(data_dir: &Path) -> String {
    run_failing(
        Command::new(wharf_binary())
            .arg("admin")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("check"),
    )
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
        Command::new(wharf_binary())
            .arg("admin")
            .arg("--data-dir")
            .arg(elsewhere.path())
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
}
