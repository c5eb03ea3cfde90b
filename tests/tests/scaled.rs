//! The scaled mode end to end: `wharf verifier`, `wharf worker` and `wharf gateway` as
//! separate processes on PostgreSQL, NATS JetStream and an S3 server (moto), driven over HTTP.
//!
//! - Consistency across replicas: an upload through one gateway is on the other's pages at
//!   once, and concurrent uploads of one filename through both gateways have one winner.
//! - The chaos test: 300 uploads from concurrent clients while a worker and a gateway are
//!   killed with `SIGKILL` and restarted; afterwards every acknowledged file is in the index
//!   once, its bytes and digests are right in the store, nothing is left in staging, and one
//!   public event announces each file.
//! - Outages of NATS, PostgreSQL and the verifier: uploads get a clear `503` (reads that need
//!   the database too, during its outage), and service resumes by itself afterwards.
//!
//! The shared PostgreSQL and NATS servers are never stopped (other tests use them): the NATS
//! outage uses a private `nats-server`, the PostgreSQL outage a proxy that cuts connections.
//! Each test runs alone (they are heavy): a process-wide lock orders them.
//! - Gateway to verifier over mutual TLS: uploads work, and a caller without the gateway's
//!   client certificate, trusting another CA, or speaking plain HTTP/2 gets nowhere.

#![allow(clippy::print_stderr)] // Progress and diagnostics go to stderr, where cargo shows them.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;
use wharf_e2e::cluster::{
    Cluster, NatsServer, Role, TcpProxy, http_agent, http_get, postgres_server_address,
};
use wharf_e2e::dist::{
    Dist, SdistBuilder, WheelBuilder, blake2_256_hex, md5_hex, normalize, sha256_hex, token_auth,
};
use wharf_e2e::raw_http::{RawResponse, request, request_paced};
use wharf_e2e::tls::TestCa;
use wharf_e2e::{fresh_venv, run_failing, run_ok, squash};
use wharf_proto::v1::OidcAudienceRequest;
use wharf_proto::v1::verifier_client::VerifierClient;

const SIMPLE_JSON: &str = "application/vnd.pypi.simple.v1+json";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One scaled test at a time: each starts a whole cluster.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// POSTs `dist`'s upload form to `base_url`'s `/legacy/` (panics on a connection error).
fn upload(base_url: &str, token: &str, dist: &Dist) -> RawResponse {
    let form = dist.form();
    let content_type = form.content_type();
    let auth = token_auth(token);
    request(
        base_url,
        "POST",
        "/legacy/",
        &[
            ("Content-Type", &content_type),
            ("Authorization", &auth),
            ("User-Agent", "wharf-e2e"),
        ],
        &form.body(),
    )
}

/// What one upload attempt got.
#[derive(Debug, Clone)]
enum Attempt {
    /// An HTTP answer: status and body.
    Answer(u16, String),
    /// No answer: the connection failed.
    Failed(String),
}

/// POSTs `dist` like [`upload`], but reports a failed connection instead of panicking.
fn try_upload(agent: &ureq::Agent, base_url: &str, token: &str, dist: &Dist) -> Attempt {
    let form = dist.form();
    let result = agent
        .post(&format!("{base_url}/legacy/"))
        .header("Content-Type", &form.content_type())
        .header("Authorization", &token_auth(token))
        .header("User-Agent", "wharf-e2e-chaos")
        .send(&form.body()[..]);
    match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            match response.body_mut().read_to_string() {
                Ok(body) => Attempt::Answer(status, body),
                Err(error) => Attempt::Failed(format!("reading the answer ({status}): {error}")),
            }
        }
        Err(error) => Attempt::Failed(error.to_string()),
    }
}

#[track_caller]
fn assert_ok(response: &RawResponse, what: &str) {
    assert_eq!(
        (response.status, response.reason.as_str()),
        (200, "OK"),
        "{what} failed; body:\n{}",
        response.text()
    );
}

/// A 503 whose reason phrase says what is unavailable (one of `subjects`).
#[track_caller]
fn assert_unavailable(response: &RawResponse, subjects: &[&str]) {
    assert_eq!(
        response.status,
        503,
        "expected 503, got {} {:?}; body:\n{}",
        response.status,
        response.reason,
        response.text()
    );
    assert!(
        subjects.iter().any(|subject| {
            response.reason
                == format!("{subject} is unavailable right now; please try again later.")
        }),
        "503 reason {:?} does not name one of {subjects:?}",
        response.reason
    );
    assert!(
        response.text().contains("unavailable right now"),
        "503 body lacks the message:\n{}",
        response.text()
    );
}

/// GET `path` on `base_url` with an `Accept` header.
fn get(base_url: &str, path: &str, accept: Option<&str>) -> RawResponse {
    let headers: Vec<(&str, &str)> = accept.map(|value| ("Accept", value)).into_iter().collect();
    request(base_url, "GET", path, &headers, &[])
}

/// The PEP 691 JSON project page, which must answer 200.
#[track_caller]
fn simple_json(base_url: &str, project: &str) -> Value {
    let response = get(
        base_url,
        &format!("/simple/{}/", normalize(project)),
        Some(SIMPLE_JSON),
    );
    assert_eq!(
        response.status,
        200,
        "/simple/{project}/ on {base_url}: {}",
        response.text()
    );
    response.json()
}

/// Filenames on a PEP 691 page, in order.
fn simple_filenames(page: &Value) -> Vec<String> {
    page["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .filter_map(|file| file["filename"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every file object of every release in `/pypi/<project>/json`, which must answer 200.
#[track_caller]
fn json_api_files(base_url: &str, project: &str) -> Vec<Value> {
    let response = get(
        base_url,
        &format!("/pypi/{}/json", normalize(project)),
        None,
    );
    assert_eq!(
        response.status,
        200,
        "/pypi/{project}/json on {base_url}: {}",
        response.text()
    );
    let json = response.json();
    let mut files = Vec::new();
    if let Some(releases) = json["releases"].as_object() {
        for release_files in releases.values() {
            files.extend(release_files.as_array().cloned().unwrap_or_default());
        }
    }
    files
}

/// The path of an absolute file URL (`http://host:port/packages/…` → `/packages/…`).
fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/')
        .map_or_else(|| "/".to_owned(), |index| rest[index..].to_owned())
}

/// The store key of a file from its URL (`…/packages/ab/cd/…/name` → `packages/ab/cd/…/name`).
fn store_key(url: &str) -> String {
    url_path(url).trim_start_matches('/').to_owned()
}

/// What is wrong with a JSON API file object that should describe `dist`, including its
/// object in the store (missing, or other bytes).
fn file_problems(cluster: &Cluster, file: &Value, dist: &Dist) -> Vec<String> {
    let name = &dist.filename;
    let mut problems = Vec::new();
    let expected = [
        ("md5", md5_hex(&dist.bytes)),
        ("sha256", sha256_hex(&dist.bytes)),
        ("blake2b_256", blake2_256_hex(&dist.bytes)),
    ];
    for (digest, value) in expected {
        if file["digests"][digest] != value.as_str() {
            problems.push(format!(
                "{name}: digest {digest} is {}, expected {value}",
                file["digests"][digest]
            ));
        }
    }
    if file["size"] != dist.bytes.len() {
        problems.push(format!(
            "{name}: size {} instead of {}",
            file["size"],
            dist.bytes.len()
        ));
    }
    let Some(url) = file["url"].as_str() else {
        problems.push(format!("{name}: no url"));
        return problems;
    };
    let key = store_key(url);
    match cluster.store_object(&key) {
        None => problems.push(format!("{name} is visible but its object {key} is missing")),
        Some(stored) if stored != dist.bytes => {
            problems.push(format!("{name}: the stored object {key} has other bytes"));
        }
        Some(_) => {}
    }
    problems
}

/// Checks that a JSON API file object describes `dist` and that the store holds its bytes.
#[track_caller]
fn check_file(cluster: &Cluster, file: &Value, dist: &Dist) {
    let problems = file_problems(cluster, file, dist);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The `file.published` events of the cluster: for each filename, the serials announced.
fn published_events(cluster: &Cluster) -> BTreeMap<String, Vec<i64>> {
    let subject = format!("{}.events.file.published", cluster.nats_prefix());
    let mut events: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for event in cluster.public_events() {
        if event.subject != subject {
            continue;
        }
        let published = wharf_proto::v1::FilePublished::decode(event.payload.as_slice())
            .expect("a FilePublished payload");
        events
            .entry(published.filename)
            .or_default()
            .push(published.serial);
    }
    events
}

/// Waits until the staging area is empty, failing with what is left.
#[track_caller]
fn assert_staging_empties(cluster: &Cluster, timeout: Duration) {
    let left = cluster.wait_staging_empty(timeout);
    assert!(
        left.is_empty(),
        "{} staged object(s) left behind after {timeout:?}: {left:?}",
        left.len()
    );
}

/// Waits until a service reports ready.
#[track_caller]
fn assert_becomes_ready(cluster: &mut Cluster, role: Role, index: usize, timeout: Duration) {
    assert!(
        cluster.wait_ready(role, index, timeout),
        "{} #{index} did not report ready within {timeout:?} (last: {:?})",
        role.command(),
        cluster.readyz(role, index)
    );
}

/// The text of an HTML error page (tags dropped, whitespace squashed), at most 120 chars.
fn text_of(body: &str) -> String {
    // Wharf's error pages put the message after the heading.
    let body = body
        .rsplit_once("</h1>")
        .map_or(body, |(_, message)| message);
    let mut text = String::new();
    let mut in_tag = false;
    for character in body.chars() {
        match character {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(character),
            _ => {}
        }
    }
    squash(&text).chars().take(120).collect()
}

fn quote_sql(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

// ---------------------------------------------------------------------------------------------
// Consistency across replicas
// ---------------------------------------------------------------------------------------------

#[test]
fn an_upload_on_one_gateway_is_visible_on_the_other() {
    let _serial = serial();
    let cluster = Cluster::builder()
        .verifiers(1)
        .workers(2)
        .gateways(2)
        .start();
    let token = cluster.user_with_token("alice");
    let (gateway_1, gateway_2) = (cluster.gateway_url(0), cluster.gateway_url(1));

    // Gateway 2 has answered for the project before it exists (a cache would hold the 404).
    let missing = get(&gateway_2, "/simple/replica-demo/", Some(SIMPLE_JSON));
    assert_eq!(missing.status, 404, "{}", missing.text());

    let wheel = WheelBuilder::new("Replica-Demo", "1.0")
        .greeting("hello through gateway 1")
        .build();
    assert_ok(&upload(&gateway_1, &token, &wheel), "upload via gateway 1");

    // At once on gateway 2, JSON and HTML alike.
    let page = simple_json(&gateway_2, "Replica-Demo");
    assert_eq!(simple_filenames(&page), vec![wheel.filename.clone()]);
    assert_eq!(page["files"][0]["hashes"]["sha256"], wheel.sha256());
    let html = get(&gateway_2, "/simple/replica-demo/", None);
    assert_eq!(html.status, 200);
    assert!(html.text().contains(&wheel.filename), "{}", html.text());
    let index = get(&gateway_2, "/simple/", Some(SIMPLE_JSON));
    assert_eq!(index.status, 200);
    let listed: Vec<String> = index.json()["projects"]
        .as_array()
        .map(|projects| {
            projects
                .iter()
                .filter_map(|project| project["name"].as_str().map(normalize))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        listed.contains(&"replica-demo".to_owned()),
        "the project list of gateway 2 lacks the project: {}",
        index.text()
    );

    // Gateway 2 serves the very bytes, and the JSON API there has the right digests.
    let url = page["files"][0]["url"].as_str().expect("file url");
    let download = get(&gateway_2, &url_path(url), None);
    assert_eq!(download.status, 200, "download {url}");
    assert!(download.body == wheel.bytes, "gateway 2 served other bytes");
    let files = json_api_files(&gateway_2, "Replica-Demo");
    assert_eq!(files.len(), 1);
    check_file(&cluster, &files[0], &wheel);

    // The other way round, now that both gateways have served (and cached) the page.
    assert_eq!(
        simple_filenames(&simple_json(&gateway_1, "Replica-Demo")),
        vec![wheel.filename.clone()]
    );
    let wheel_2 = WheelBuilder::new("Replica-Demo", "2.0")
        .greeting("hello through gateway 2")
        .build();
    assert_ok(
        &upload(&gateway_2, &token, &wheel_2),
        "upload via gateway 2",
    );
    let names: BTreeSet<String> = simple_filenames(&simple_json(&gateway_1, "Replica-Demo"))
        .into_iter()
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([wheel.filename.clone(), wheel_2.filename.clone()])
    );
    let names: BTreeSet<String> = simple_filenames(&simple_json(&gateway_2, "Replica-Demo"))
        .into_iter()
        .collect();
    assert_eq!(names.len(), 2, "gateway 2 shows a stale page: {names:?}");

    // pip installs through gateway 2 (PEP 658 metadata, then the wheel) and the module works.
    let env = fresh_venv();
    let python = env.path().join("venv/bin/python");
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
            .arg(format!("{gateway_2}/simple/"))
            .arg("replica-demo==1.0"),
    );
    let greeting = run_ok(
        Command::new(&python).args(["-c", "import replica_demo; print(replica_demo.hello())"]),
    );
    assert_eq!(greeting.trim(), "hello through gateway 1");

    // `wharf admin check` on PostgreSQL and the bucket: the two wheels and their metadata
    // agree with their rows; an object altered behind Wharf's back is named.
    let store = cluster.store_args();
    let report = run_ok(cluster.admin_command().arg("check").args(&store));
    assert!(
        report.contains("checked 2 file(s): 4 object(s)") && report.contains("; 0 problem(s)"),
        "{report}"
    );
    let key = store_key(url);
    cluster.put_store_object(&key, b"altered behind wharf's back");
    let failed = run_failing(cluster.admin_command().arg("check").args(&store));
    assert!(
        failed.contains(&format!("PROBLEM {key}: size ")) && failed.contains("; 3 problem(s)"),
        "{failed}"
    );
}

#[test]
fn concurrent_uploads_of_one_filename_have_one_winner() {
    let _serial = serial();
    let cluster = Cluster::builder()
        .verifiers(1)
        .workers(2)
        .gateways(2)
        .start();
    let token = cluster.user_with_token("bob");
    let gateways = [cluster.gateway_url(0), cluster.gateway_url(1)];
    // The project exists, so the race is about the filename alone.
    let seed = SdistBuilder::new("Race-Demo", "0.1").build();
    assert_ok(&upload(&gateways[0], &token, &seed), "seed upload");

    let race = |dists: Vec<Dist>| -> Vec<RawResponse> {
        let barrier = Arc::new(Barrier::new(dists.len()));
        let threads: Vec<_> = dists
            .into_iter()
            .enumerate()
            .map(|(index, dist)| {
                let barrier = Arc::clone(&barrier);
                let gateway = gateways[index % 2].clone();
                let token = token.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    upload(&gateway, &token, &dist)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("upload thread"))
            .collect()
    };

    // 16 different files under one name: one wins, the others are told the name is taken.
    let variants: Vec<Dist> = (0..16)
        .map(|index| {
            WheelBuilder::new("Race-Demo", "1.0")
                .greeting(&format!("variant {index}"))
                .build()
        })
        .collect();
    let filename = variants[0].filename.clone();
    assert!(variants.iter().all(|dist| dist.filename == filename));
    let started = Instant::now();
    let answers = race(variants.clone());
    eprintln!("16 conflicting uploads answered in {:?}", started.elapsed());
    let winners: Vec<usize> = (0..answers.len())
        .filter(|&index| answers[index].status == 200)
        .collect();
    let summary: Vec<(u16, String)> = answers
        .iter()
        .map(|answer| (answer.status, answer.reason.clone()))
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one upload must win: {summary:#?}"
    );
    let winner = &variants[winners[0]];
    for (index, answer) in answers.iter().enumerate() {
        if index != winners[0] {
            // As on PyPI, the message names the refused upload's own hash.
            let taken = format!(
                "File already exists ('{filename}', with blake2_256 hash '{}'). \
                 See https://pypi.org/help/#file-name-reuse for more information.",
                variants[index].blake2_256()
            );
            assert_eq!(
                (answer.status, answer.reason.as_str()),
                (400, taken.as_str()),
                "upload {index} (gateway {}); body:\n{}",
                index % 2 + 1,
                answer.text()
            );
        }
    }
    // The index and the store hold the winner, once; the losers' copies are gone.
    assert_eq!(
        cluster.database().query_i64(&format!(
            "SELECT count(*) FROM files WHERE filename = {}",
            quote_sql(&filename)
        )),
        1
    );
    for gateway in &gateways {
        let files = json_api_files(gateway, "Race-Demo");
        let matching: Vec<&Value> = files
            .iter()
            .filter(|file| file["filename"] == filename.as_str())
            .collect();
        assert_eq!(matching.len(), 1, "{gateway}: {files:#?}");
        check_file(&cluster, matching[0], winner);
    }
    let copies: Vec<String> = cluster
        .store_objects("packages/")
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| key.ends_with(&format!("/{filename}")))
        .collect();
    assert_eq!(copies.len(), 1, "stored copies of {filename}: {copies:?}");

    // 16 identical files under one name: every client is told it is stored; one row.
    let identical = WheelBuilder::new("Race-Demo", "2.0").build();
    let answers = race(vec![identical.clone(); 16]);
    for (index, answer) in answers.iter().enumerate() {
        assert_eq!(
            (answer.status, answer.reason.as_str()),
            (200, "OK"),
            "identical upload {index} (gateway {}); body:\n{}",
            index % 2 + 1,
            answer.text()
        );
    }
    assert_eq!(
        cluster.database().query_i64(&format!(
            "SELECT count(*) FROM files WHERE filename = {}",
            quote_sql(&identical.filename)
        )),
        1
    );
    for gateway in &gateways {
        let names = simple_filenames(&simple_json(gateway, "Race-Demo"));
        assert_eq!(
            names
                .iter()
                .filter(|name| **name == identical.filename)
                .count(),
            1,
            "{gateway}: {names:?}"
        );
    }
    assert_staging_empties(&cluster, Duration::from_secs(15));
    let events = published_events(&cluster);
    for name in [&seed.filename, &filename, &identical.filename] {
        assert_eq!(
            events.get(name.as_str()).map(Vec::len),
            Some(1),
            "file.published events (filename: serials): {events:?}"
        );
    }
    assert_eq!(events.len(), 3, "file.published events: {events:?}");
}

// ---------------------------------------------------------------------------------------------
// Chaos
// ---------------------------------------------------------------------------------------------

/// Uploads in the chaos run.
const CHAOS_UPLOADS: usize = 300;
/// Concurrent clients.
const CHAOS_CLIENTS: usize = 8;
/// Attempts per upload (the first plus retries), as a patient twine user would make.
const CHAOS_ATTEMPTS: usize = 12;
/// Successful uploads after which a worker and a gateway are killed.
const CHAOS_KILL_AFTER: usize = 100;

/// What happened to one upload in the chaos run.
#[derive(Debug, Clone, Default)]
struct Journey {
    attempts: Vec<String>,
    final_status: Option<u16>,
}

#[test]
fn chaos_kill_workers_and_a_gateway_mid_run() {
    let _serial = serial();
    let started = Instant::now();
    // A short outcome wait, so a client whose upload sat with the killed worker hears 503
    // and retries (as twine does), instead of waiting for the redelivery.
    let mut cluster = Cluster::builder()
        .verifiers(1)
        .workers(3)
        .gateways(2)
        .gateway_args(&["--upload-timeout", "10s"])
        // Staging a killed gateway never queued is swept once it is older than any upload
        // can still wait (the 10 s above), as production does after 15 minutes.
        .worker_args(&["--staging-max-age", "20s", "--staging-sweep-interval", "2s"])
        .start();
    let token = cluster.user_with_token("chaos");
    eprintln!("cluster ready in {:?}", started.elapsed());

    // 5 projects x 30 releases x (wheel + sdist) = 300 distinct files.
    let projects = [
        "Chaos-Alpha",
        "chaos_beta",
        "Chaos.Gamma",
        "chaos-delta",
        "ChaosEpsilon",
    ];
    let mut dists: Vec<Dist> = Vec::with_capacity(CHAOS_UPLOADS);
    for release in 0..CHAOS_UPLOADS / projects.len() / 2 {
        for project in projects {
            let version = format!("1.{release}");
            dists.push(
                WheelBuilder::new(project, &version)
                    .greeting(&format!("{project} {version}"))
                    .build(),
            );
            dists.push(
                SdistBuilder::new(project, &version)
                    .greeting(&format!("{project} {version}"))
                    .build(),
            );
        }
    }
    assert_eq!(dists.len(), CHAOS_UPLOADS);
    let unique: BTreeSet<&str> = dists.iter().map(|dist| dist.filename.as_str()).collect();
    assert_eq!(unique.len(), CHAOS_UPLOADS, "filenames must be distinct");

    let dists = Arc::new(dists);
    let gateways = Arc::new([cluster.gateway_url(0), cluster.gateway_url(1)]);
    let next = Arc::new(AtomicUsize::new(0));
    let succeeded = Arc::new(AtomicUsize::new(0));
    let journeys = Arc::new(Mutex::new(vec![Journey::default(); CHAOS_UPLOADS]));
    let clients: Vec<_> = (0..CHAOS_CLIENTS)
        .map(|_| {
            let (dists, gateways, next, succeeded, journeys, token) = (
                Arc::clone(&dists),
                Arc::clone(&gateways),
                Arc::clone(&next),
                Arc::clone(&succeeded),
                Arc::clone(&journeys),
                token.clone(),
            );
            std::thread::spawn(move || {
                let agent = http_agent(Duration::from_secs(60));
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= dists.len() {
                        break;
                    }
                    // Spread over the gateways; a retry goes to the same URL, as twine's.
                    let gateway = &gateways[index % 2];
                    let mut journey = Journey::default();
                    for attempt in 0..CHAOS_ATTEMPTS {
                        let outcome = try_upload(&agent, gateway, &token, &dists[index]);
                        let retry = match &outcome {
                            Attempt::Answer(status, body) => {
                                journey.attempts.push(format!("{status} {}", text_of(body)));
                                journey.final_status = Some(*status);
                                *status >= 500
                            }
                            Attempt::Failed(error) => {
                                journey.attempts.push(format!("connection: {error}"));
                                journey.final_status = None;
                                true
                            }
                        };
                        if !retry {
                            break;
                        }
                        let backoff = 250 * 2u64.pow(attempt.min(3) as u32);
                        std::thread::sleep(Duration::from_millis(backoff));
                    }
                    if journey.final_status == Some(200) {
                        succeeded.fetch_add(1, Ordering::SeqCst);
                    }
                    journeys.lock().expect("journeys")[index] = journey;
                }
            })
        })
        .collect();

    // Mid-run: SIGKILL worker 1 and gateway 1, then start them again on their ports.
    let deadline = Instant::now() + Duration::from_secs(120);
    while succeeded.load(Ordering::SeqCst) < CHAOS_KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "only {} uploads succeeded in 2 minutes",
            succeeded.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let at_kill = succeeded.load(Ordering::SeqCst);
    cluster.kill(Role::Worker, 0);
    cluster.kill(Role::Gateway, 0);
    eprintln!(
        "killed worker 0 and gateway 0 after {at_kill} successful uploads ({:?})",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(500));
    cluster.restart(Role::Gateway, 0);
    cluster.restart(Role::Worker, 0);
    eprintln!("restarted them ({:?})", started.elapsed());

    for client in clients {
        client.join().expect("client thread");
    }
    let upload_phase = started.elapsed();
    let journeys = journeys.lock().expect("journeys").clone();

    // Every upload ended with a 200 (retries included), and no attempt ever got a 500.
    let retried = journeys.iter().filter(|j| j.attempts.len() > 1).count();
    let attempts: usize = journeys.iter().map(|j| j.attempts.len()).sum();
    let failures: Vec<(usize, &Journey)> = journeys
        .iter()
        .enumerate()
        .filter(|(_, journey)| journey.final_status != Some(200))
        .collect();
    let mut by_answer: BTreeMap<String, usize> = BTreeMap::new();
    for journey in &journeys {
        for attempt in &journey.attempts {
            let key = if attempt.starts_with("connection") {
                "connection error".to_owned()
            } else {
                attempt.clone()
            };
            *by_answer.entry(key).or_insert(0) += 1;
        }
    }
    eprintln!(
        "upload phase: {upload_phase:?}; {attempts} attempts for {CHAOS_UPLOADS} uploads, \
         {retried} uploads retried; answers: {by_answer:#?}"
    );
    // From here on every broken invariant is collected, so one run reports them all.
    let mut violations: Vec<String> = Vec::new();
    let errors_500 = journeys
        .iter()
        .flat_map(|journey| &journey.attempts)
        .filter(|attempt| attempt.starts_with("500"))
        .count();
    if errors_500 > 0 {
        violations.push(format!("{errors_500} attempt(s) got a 500"));
    }
    for (index, journey) in &failures {
        violations.push(format!(
            "{} never got a 200: {:?}",
            dists[*index].filename, journey.attempts
        ));
    }
    let acknowledged: Vec<&Dist> = journeys
        .iter()
        .zip(dists.iter())
        .filter(|(journey, _)| journey.final_status == Some(200))
        .map(|(_, dist)| dist)
        .collect();

    // Redeliveries (ack wait 30 s) finish the uploads the killed worker held, and clean up.
    let cleanup_started = Instant::now();
    let left = cluster.wait_staging_empty(Duration::from_secs(45));
    eprintln!(
        "waited {:?} for the staging area to empty; left: {left:?}",
        cleanup_started.elapsed()
    );
    if !left.is_empty() {
        let workers_saw: Vec<bool> = left
            .iter()
            .map(|key| {
                let id = key.trim_start_matches("staging/");
                (0..3).any(|worker| cluster.log(Role::Worker, worker).contains(id))
            })
            .collect();
        violations.push(format!(
            "{} staged object(s) left behind 45 s after the run: {left:?} \
             (mentioned in a worker log: {workers_saw:?})",
            left.len()
        ));
    }

    // Every acknowledged file is in the index exactly once, on both gateways, with the right
    // digests and its exact bytes in the store.
    let by_name: BTreeMap<&str, &Dist> = dists
        .iter()
        .map(|dist| (dist.filename.as_str(), dist))
        .collect();
    let mut visible = 0;
    for project in projects {
        let files = json_api_files(&cluster.gateway_url(1), project);
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for file in &files {
            let name = file["filename"].as_str().unwrap_or_default().to_owned();
            *seen.entry(name.clone()).or_insert(0) += 1;
            match by_name.get(name.as_str()) {
                Some(dist) => violations.extend(file_problems(&cluster, file, dist)),
                None => violations.push(format!("{name} is visible but was never uploaded")),
            }
        }
        for (name, count) in &seen {
            if *count > 1 {
                violations.push(format!("{name} is listed {count} times"));
            }
        }
        let expected: BTreeSet<String> = acknowledged
            .iter()
            .filter(|dist| dist.name == project)
            .map(|dist| dist.filename.clone())
            .collect();
        let shown: BTreeSet<String> = seen.keys().cloned().collect();
        for name in expected.difference(&shown) {
            violations.push(format!("{name} got a 200 but is not in the index"));
        }
        visible += files.len();
        for gateway in 0..2 {
            let names = simple_filenames(&simple_json(&cluster.gateway_url(gateway), project));
            let unique: BTreeSet<String> = names.iter().cloned().collect();
            if unique.len() != names.len() || unique != shown {
                violations.push(format!(
                    "{project}: the simple page of gateway {} lists {} files ({} distinct), \
                     the JSON API {}",
                    gateway + 1,
                    names.len(),
                    unique.len(),
                    shown.len()
                ));
            }
        }
    }
    let rows = cluster.database().query_i64("SELECT count(*) FROM files");
    if visible != CHAOS_UPLOADS || rows != CHAOS_UPLOADS as i64 {
        violations.push(format!(
            "{visible} files visible and {rows} file rows for {CHAOS_UPLOADS} distinct uploads"
        ));
    }

    // The store holds one object per file (plus the wheels' PEP 658 metadata), no strays.
    let packages: Vec<String> = cluster
        .store_objects("packages/")
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| !key.ends_with(".metadata"))
        .collect();
    if packages.len() != CHAOS_UPLOADS {
        violations.push(format!(
            "{} package objects in the store for {CHAOS_UPLOADS} files",
            packages.len()
        ));
    }

    // One public file.published event per file.
    let events = published_events(&cluster);
    let missing: Vec<&&str> = by_name
        .keys()
        .filter(|name| !events.contains_key(**name))
        .collect();
    // (filename, serials announced)
    let repeated: Vec<(&String, &Vec<i64>)> = events
        .iter()
        .filter(|(_, serials)| serials.len() != 1)
        .collect();
    let strangers: Vec<&String> = events
        .keys()
        .filter(|name| !by_name.contains_key(name.as_str()))
        .collect();
    if !missing.is_empty() || !repeated.is_empty() || !strangers.is_empty() {
        violations.push(format!(
            "file.published events: missing for {missing:?}, repeated {repeated:?}, \
             unknown {strangers:?}"
        ));
    }
    eprintln!("chaos test checked in {:?}", started.elapsed());
    assert!(
        violations.is_empty(),
        "the chaos run broke {} invariant(s):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Outages
// ---------------------------------------------------------------------------------------------

#[test]
fn nats_outage_gives_503_then_recovers() {
    let _serial = serial();
    let mut nats = NatsServer::start();
    let mut cluster = Cluster::builder()
        .nats_url(&nats.url())
        .gateway_args(&["--upload-timeout", "30s"])
        .start();
    let token = cluster.user_with_token("carol");
    let gateway = cluster.gateway_url(0);
    let before = Dist::wheel("Nats-Outage", "1.0");
    assert_ok(
        &upload(&gateway, &token, &before),
        "upload before the outage",
    );

    nats.kill();
    let during = Dist::wheel("Nats-Outage", "2.0");
    let started = Instant::now();
    let response = upload(&gateway, &token, &during);
    eprintln!(
        "upload during the NATS outage answered in {:?}",
        started.elapsed()
    );
    assert_unavailable(&response, &["The event bus"]);
    // Reads do not need the bus.
    assert_eq!(
        simple_filenames(&simple_json(&gateway, "Nats-Outage")),
        vec![before.filename.clone()]
    );
    let ready = cluster.readyz(Role::Gateway, 0);
    assert!(
        matches!(&ready, Ok((503, body)) if body.contains("bus")),
        "gateway readiness during the NATS outage: {ready:?}"
    );
    assert!(
        cluster.staging_objects().is_empty(),
        "a refused upload left staged bytes: {:?}",
        cluster.staging_objects()
    );

    // NATS returns (same port, same store); Wharf is not restarted.
    nats.restart();
    assert_becomes_ready(&mut cluster, Role::Gateway, 0, Duration::from_secs(30));
    assert_becomes_ready(&mut cluster, Role::Worker, 0, Duration::from_secs(30));
    let response = upload(&gateway, &token, &during);
    assert_ok(&response, "upload after the NATS outage");
    let after = Dist::sdist("Nats-Outage", "2.0");
    assert_ok(
        &upload(&gateway, &token, &after),
        "second upload after the outage",
    );
    let names: BTreeSet<String> = simple_filenames(&simple_json(&gateway, "Nats-Outage"))
        .into_iter()
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([before.filename, during.filename, after.filename])
    );
    assert_staging_empties(&cluster, Duration::from_secs(10));
}

#[test]
fn postgres_outage_gives_503_then_recovers() {
    let _serial = serial();
    let proxy = TcpProxy::start(&postgres_server_address());
    let mut cluster = Cluster::builder()
        .database_via(&proxy.address())
        .gateway_args(&["--upload-timeout", "30s"])
        .start();
    let token = cluster.user_with_token("dave");
    let gateway = cluster.gateway_url(0);
    let before = Dist::wheel("Pg-Outage", "1.0");
    assert_ok(
        &upload(&gateway, &token, &before),
        "upload before the outage",
    );
    let before_url = json_api_files(&gateway, "Pg-Outage")[0]["url"]
        .as_str()
        .expect("file url")
        .to_owned();

    proxy.cut();
    let during = Dist::wheel("Pg-Outage", "2.0");
    let started = Instant::now();
    let response = upload(&gateway, &token, &during);
    eprintln!(
        "upload during the PostgreSQL outage answered in {:?}",
        started.elapsed()
    );
    assert_unavailable(&response, &["The verifier", "The index"]);
    // Reads that need the database are 503 too (never a 500, never a wrong 404).
    for path in ["/simple/pg-outage/", "/simple/", "/pypi/pg-outage/json"] {
        let response = get(&gateway, path, None);
        assert_eq!(
            response.status,
            503,
            "GET {path} during the PostgreSQL outage: {} {}",
            response.status,
            response.text()
        );
    }
    let response = get(&gateway, "/simple/pg-outage/", Some(SIMPLE_JSON));
    assert_eq!(response.status, 503, "{}", response.text());
    // A download may be served from the store alone, or refused; never a 500.
    let download = get(&gateway, &url_path(&before_url), None);
    assert!(
        download.status == 503 || (download.status == 200 && download.body == before.bytes),
        "download during the PostgreSQL outage: {} {}",
        download.status,
        download.text()
    );
    let ready = cluster.readyz(Role::Gateway, 0);
    assert!(
        matches!(&ready, Ok((503, body)) if body.contains("index")),
        "gateway readiness during the PostgreSQL outage: {ready:?}"
    );

    // PostgreSQL is reachable again; Wharf is not restarted.
    proxy.restore();
    assert_becomes_ready(&mut cluster, Role::Gateway, 0, Duration::from_secs(30));
    assert_becomes_ready(&mut cluster, Role::Worker, 0, Duration::from_secs(30));
    assert_becomes_ready(&mut cluster, Role::Verifier, 0, Duration::from_secs(30));
    assert_ok(
        &upload(&gateway, &token, &during),
        "upload after the outage",
    );
    let names: BTreeSet<String> = simple_filenames(&simple_json(&gateway, "Pg-Outage"))
        .into_iter()
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([before.filename.clone(), during.filename.clone()])
    );
    assert_staging_empties(&cluster, Duration::from_secs(10));

    // An outage in the middle of an upload: the verifier has granted it and the bytes are
    // streaming to staging when the database goes away for 2 s, so the worker meets the
    // outage. The answer is a 200 for a stored file or a 503, never anything else.
    let big = WheelBuilder::new("Pg-Outage", "3.0")
        .padding(256 * 1024)
        .build();
    let form = big.form();
    let body = form.body();
    let content_type = form.content_type();
    let auth = token_auth(&token);
    let cut_at = body.len() - big.bytes.len() / 2;
    let response = std::thread::scope(|scope| {
        let mut restorer = None;
        let response = request_paced(
            &gateway,
            "POST",
            "/legacy/",
            &[("Content-Type", &content_type), ("Authorization", &auth)],
            &body,
            16 * 1024,
            Duration::from_millis(20),
            |sent| {
                if sent >= cut_at && restorer.is_none() {
                    proxy.cut();
                    let proxy = &proxy;
                    restorer = Some(scope.spawn(move || {
                        std::thread::sleep(Duration::from_secs(2));
                        proxy.restore();
                    }));
                }
            },
        );
        assert!(restorer.is_some(), "the upload finished before the cut");
        response
    });
    eprintln!(
        "upload cut off from PostgreSQL mid-way: {} {:?} (the worker retried: {})",
        response.status,
        response.reason,
        cluster
            .log(Role::Worker, 0)
            .contains("transient failure, retrying")
    );
    match response.status {
        200 => {
            let files = json_api_files(&gateway, "Pg-Outage");
            let stored: Vec<&Value> = files
                .iter()
                .filter(|file| file["filename"] == big.filename.as_str())
                .collect();
            assert_eq!(stored.len(), 1, "a 200 for a file that is not in the index");
            check_file(&cluster, stored[0], &big);
        }
        503 => {
            let names = simple_filenames(&simple_json(&gateway, "Pg-Outage"));
            assert!(
                !names.contains(&big.filename),
                "a 503 for a file that was stored"
            );
            assert_ok(&upload(&gateway, &token, &big), "retry after the 503");
        }
        other => panic!(
            "an upload that met the outage got {other} {:?}: {}",
            response.reason,
            response.text()
        ),
    }
    assert_staging_empties(&cluster, Duration::from_secs(10));
}

#[test]
fn verifier_outage_gives_503_then_recovers() {
    let _serial = serial();
    let mut cluster = Cluster::builder()
        .gateway_args(&["--upload-timeout", "30s"])
        .start();
    let token = cluster.user_with_token("erin");
    let gateway = cluster.gateway_url(0);
    let before = Dist::wheel("Verifier-Outage", "1.0");
    assert_ok(
        &upload(&gateway, &token, &before),
        "upload before the outage",
    );

    cluster.kill(Role::Verifier, 0);
    let during = Dist::wheel("Verifier-Outage", "2.0");
    let started = Instant::now();
    let response = upload(&gateway, &token, &during);
    eprintln!(
        "upload during the verifier outage answered in {:?}",
        started.elapsed()
    );
    assert_unavailable(&response, &["The verifier"]);
    // Reads do not need the verifier.
    assert_eq!(
        simple_filenames(&simple_json(&gateway, "Verifier-Outage")),
        vec![before.filename.clone()]
    );
    let (status, _) = http_get(&format!("{gateway}/simple/")).expect("GET /simple/");
    assert_eq!(status, 200);
    assert!(cluster.staging_objects().is_empty());

    // The verifier comes back on its port; the gateway is not restarted.
    cluster.restart(Role::Verifier, 0);
    assert_becomes_ready(&mut cluster, Role::Gateway, 0, Duration::from_secs(30));
    assert_ok(
        &upload(&gateway, &token, &during),
        "upload after the outage",
    );
    let names: BTreeSet<String> = simple_filenames(&simple_json(&gateway, "Verifier-Outage"))
        .into_iter()
        .collect();
    assert_eq!(names, BTreeSet::from([before.filename, during.filename]));
    assert_staging_empties(&cluster, Duration::from_secs(10));
}

/// Calls the verifier's `OidcAudience` at `url` over a fresh channel (`tls` for https).
async fn verifier_audience(
    url: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<String, String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|error| error.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|error| error.to_string())?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| format!("connect: {error:?}"))?;
    VerifierClient::new(channel)
        .oidc_audience(OidcAudienceRequest {})
        .await
        .map(|response| response.into_inner().audience)
        .map_err(|status| format!("call: {status:?}"))
}

#[test]
fn gateway_and_verifier_speak_mutual_tls() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};

    let _serial = serial();
    let ca = Arc::new(TestCa::generate());
    // `start` waits for the gateway's /readyz, which calls the verifier: over mutual TLS.
    let cluster = Cluster::builder().verifier_tls(Arc::clone(&ca)).start();
    let token = cluster.user_with_token("tls-user");
    let gateway = cluster.gateway_url(0);
    let wheel = Dist::wheel("Mutual-Tls", "1.0");
    assert_ok(
        &upload(&gateway, &token, &wheel),
        "upload via a TLS verifier",
    );
    assert_eq!(
        simple_filenames(&simple_json(&gateway, "Mutual-Tls")),
        vec![wheel.filename.clone()]
    );

    let verifier = cluster.url(Role::Verifier, 0);
    assert!(verifier.starts_with("https://"), "{verifier}");
    let read = |path: std::path::PathBuf| std::fs::read(path).expect("PEM file");
    let trusted = || Certificate::from_pem(read(ca.ca_cert()));
    let gateway_identity = || Identity::from_pem(read(ca.client_cert()), read(ca.client_key()));
    let stranger = TestCa::generate();
    let stranger_identity =
        Identity::from_pem(read(stranger.client_cert()), read(stranger.client_key()));
    let plain = verifier.replacen("https://", "http://", 1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let outcomes = runtime.block_on(async {
        [
            (
                "the gateway's certificate",
                verifier_audience(
                    &verifier,
                    Some(
                        ClientTlsConfig::new()
                            .ca_certificate(trusted())
                            .identity(gateway_identity()),
                    ),
                )
                .await,
            ),
            (
                "no client certificate",
                verifier_audience(
                    &verifier,
                    Some(ClientTlsConfig::new().ca_certificate(trusted())),
                )
                .await,
            ),
            (
                "a client certificate of another CA",
                verifier_audience(
                    &verifier,
                    Some(
                        ClientTlsConfig::new()
                            .ca_certificate(trusted())
                            .identity(stranger_identity),
                    ),
                )
                .await,
            ),
            (
                "the system's roots only",
                verifier_audience(
                    &verifier,
                    Some(
                        ClientTlsConfig::new()
                            .with_native_roots()
                            .identity(gateway_identity()),
                    ),
                )
                .await,
            ),
            ("plain HTTP/2", verifier_audience(&plain, None).await),
        ]
    });
    let mut outcomes = outcomes.into_iter();
    let (_, admitted) = outcomes.next().expect("the control call");
    assert_eq!(
        admitted.as_deref(),
        Ok("wharf"),
        "the gateway's own credentials"
    );
    for (what, outcome) in outcomes {
        eprintln!("verifier called with {what}: {outcome:?}");
        assert!(
            outcome.is_err(),
            "with {what} the verifier answered: {outcome:?}"
        );
    }
}

/// The public event stream tells the story of a project: its creation and first file, then
/// admin changes (a yank and a publisher change made with `wharf admin --nats-url …`), each
/// once and replayable from `<PREFIX>_EVENTS`, as external consumers would read them.
#[test]
fn admin_changes_are_public_events() {
    let _serial = serial();
    let cluster = Cluster::builder().start();
    let token = cluster.user_with_token("admin-events");
    let wheel = WheelBuilder::new("Event-Demo", "1.0").build();
    assert_ok(&upload(&cluster.gateway_url(0), &token, &wheel), "upload");
    let bus = [
        "--nats-url",
        cluster.nats_url(),
        "--nats-prefix",
        cluster.nats_prefix(),
    ];
    let with_bus = |args: &[&str]| {
        let mut all = bus.to_vec();
        all.extend_from_slice(args);
        cluster.admin(&all)
    };
    with_bus(&["yank", "event-demo", "1.0", "--reason", "broken"]);
    with_bus(&["unyank", "event-demo", "1.0"]);
    let publisher = with_bus(&[
        "publisher",
        "add",
        "github",
        "--project",
        "event-demo",
        "--owner",
        "octo",
        "--repository",
        "event-demo",
        "--workflow",
        "release.yml",
    ]);
    with_bus(&["publisher", "remove", &publisher]);

    let prefix = cluster.nats_prefix().to_owned();
    let subjects: Vec<String> = cluster
        .public_events()
        .into_iter()
        .map(|message| message.subject)
        .collect();
    for kind in [
        "project.created",
        "file.published",
        "release.yanked",
        "release.unyanked",
        "oidc.publisher_added",
        "oidc.publisher_removed",
    ] {
        let subject = format!("{prefix}.events.{kind}");
        assert_eq!(
            subjects.iter().filter(|seen| **seen == subject).count(),
            1,
            "{subject} once in {subjects:?}"
        );
    }
}

/// Issue #13: `wharf admin project create` against PostgreSQL (`--database-url`) while the
/// cluster runs: a stdlib name an upload may not create is created for its owner, whose upload
/// through a gateway then lands.
#[test]
fn an_operator_created_project_takes_its_owners_upload() {
    let _serial = serial();
    let cluster = Cluster::builder().start();
    let token = cluster.user_with_token("vetted");
    let wheel = WheelBuilder::new("importlib-metadata", "8.7.0").build();
    let refused = upload(&cluster.gateway_url(0), &token, &wheel);
    assert_eq!(
        (refused.status, refused.reason.as_str()),
        (
            400,
            "The name 'importlib-metadata' isn't allowed (conflict with Python Standard \
             Library module name). See https://pypi.org/help/#project-name for more information."
        ),
        "{}",
        refused.text()
    );
    let created = cluster.admin(&[
        "project",
        "create",
        "importlib-metadata",
        "--owner",
        "vetted",
    ]);
    assert!(created.contains("created importlib-metadata"), "{created}");
    assert_ok(&upload(&cluster.gateway_url(0), &token, &wheel), "upload");
}

// ---------------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------------

/// A `429` from `limit` whose `Retry-After` is a whole number of seconds (1..=`at_most`);
/// returns it.
#[track_caller]
fn assert_rate_limited(response: &RawResponse, message_start: &str, at_most: u64) -> u64 {
    assert_eq!(
        response.status,
        429,
        "{:?}; body:\n{}",
        response.reason,
        response.text()
    );
    assert!(
        response.reason.starts_with(message_start) && response.reason.contains(". Try again in "),
        "reason {:?}",
        response.reason
    );
    assert!(
        response.text().contains(message_start),
        "{}",
        response.text()
    );
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After: {:?}", response.header("retry-after")));
    assert!(
        (1..=at_most).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    retry_after
}

/// Two gateways on one PostgreSQL index enforce one limit per client IP and one per token:
/// requests through either gateway count against the same allowance; a refusal is a `429`
/// with `Retry-After`, counted in `/metrics`; once that time has passed, uploads go through.
#[test]
fn rate_limits_are_shared_by_the_gateways() {
    let _serial = serial();
    // Per IP: 4 per 12 s (one more every 3 s); per token: 2 per 12 s (one more every 6 s).
    let cluster = Cluster::builder()
        .gateways(2)
        .gateway_args(&[
            "--upload-rate-limit",
            "4",
            "--upload-token-rate-limit",
            "2",
            "--rate-limit-window",
            "12s",
        ])
        .start();
    let first_token = cluster.user_with_token("rate-a");
    let second_token = cluster.user_with_token("rate-b");
    let (gateway_0, gateway_1) = (cluster.gateway_url(0), cluster.gateway_url(1));

    // The first token's allowance (2) is spent across both gateways.
    assert_ok(
        &upload(&gateway_0, &first_token, &Dist::wheel("Rate-Demo", "1.0")),
        "first upload",
    );
    assert_ok(
        &upload(&gateway_1, &first_token, &Dist::sdist("Rate-Demo", "1.0")),
        "second upload",
    );
    assert_rate_limited(
        &upload(&gateway_0, &first_token, &Dist::wheel("Rate-Demo", "2.0")),
        "Too many uploads with this API token",
        6,
    );
    // Another token still may, until the address's allowance (4) is spent.
    assert_ok(
        &upload(&gateway_1, &second_token, &Dist::wheel("Rate-Other", "1.0")),
        "upload with another token",
    );
    let refused = upload(&gateway_0, &second_token, &Dist::sdist("Rate-Other", "1.0"));
    let retry_after = assert_rate_limited(&refused, "Too many uploads from this IP address", 3);
    let (status, metrics) = http_get(&format!("{gateway_0}/metrics")).expect("metrics");
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&metrics);
    for line in [
        "wharf_rate_limited_requests_total{limit=\"upload-token\"} 1",
        "wharf_rate_limited_requests_total{limit=\"upload-ip\"} 1",
    ] {
        assert!(metrics.contains(line), "no {line} in:\n{metrics}");
    }

    // After Retry-After the address may upload again.
    std::thread::sleep(Duration::from_secs(retry_after));
    assert_ok(
        &upload(&gateway_1, &second_token, &Dist::sdist("Rate-Other", "1.0")),
        "upload after Retry-After",
    );
}

// ---------------------------------------------------------------------------------------------
// The engines' trust boundary (issue #12, finding 5)
// ---------------------------------------------------------------------------------------------

/// Publishes `event` on the cluster's staged-upload subject, as anyone who reaches NATS can.
fn publish_staged_behind_the_gateways_back(cluster: &Cluster, event: &wharf_proto::v1::FileStaged) {
    let subject = format!("{}.upload.staged", cluster.nats_prefix());
    let url = cluster.nats_url().to_owned();
    let payload = event.encode_to_vec();
    let upload_id = event.upload_id.clone();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(async move {
            let client = async_nats::connect(&url).await.expect("connect to NATS");
            let jetstream = async_nats::jetstream::new(client);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, upload_id.as_str());
            jetstream
                .publish_with_headers(subject, headers, payload.into())
                .await
                .expect("publish")
                .await
                .expect("stored by JetStream");
        });
}

/// A forged `FileStaged` (someone on the engines' network writes a wheel into staging and
/// announces it as another user's upload) is refused by the worker, not committed: the
/// project page shows no file of it, and the worker logs the refusal. A genuine upload still
/// works. Before the upload grant, the worker committed the forged file as Alice's.
#[test]
fn a_forged_staged_event_is_refused_not_committed() {
    let _serial = serial();
    let cluster = Cluster::builder().start();
    let gateway = cluster.gateway_url(0);
    let alice = cluster.user_with_token("alice-grant");
    assert_ok(
        &upload(&gateway, &alice, &Dist::wheel("Alice-Lib", "1.0")),
        "Alice's genuine upload",
    );
    let alice_id = cluster
        .database()
        .query_text("SELECT id FROM users WHERE name = 'alice-grant'");

    // The attacker's wheel, in staging, announced as Alice's upload of version 6.6.6.
    let forged = Dist::wheel("Alice-Lib", "6.6.6");
    let upload_id = uuid::Uuid::now_v7().to_string();
    cluster.put_store_object(&format!("staging/{upload_id}"), &forged.bytes);
    let event = wharf_proto::v1::FileStaged {
        upload_id: upload_id.clone(),
        staging_key: format!("staging/{upload_id}"),
        size: forged.size() as u64,
        filename: forged.filename.clone(),
        filetype: forged.filetype.to_owned(),
        pyversion: forged.pyversion.to_owned(),
        sha256_digest: forged.sha256(),
        metadata: Some(wharf_proto::v1::ReleaseMetadata {
            metadata_version: Some("2.1".to_owned()),
            name: Some(forged.name.clone()),
            version: Some(forged.version.clone()),
            ..Default::default()
        }),
        uploader: Some(wharf_proto::v1::Uploader {
            user_id: alice_id,
            publisher_id: String::new(),
            may_create_project: false,
            user_name: "alice-grant".to_owned(),
        }),
        received_at_micros: 0,
        ..Default::default()
    };
    publish_staged_behind_the_gateways_back(&cluster, &event);

    // Wait for the worker to settle the forged event: refused (logged), or committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let committed = |cluster: &Cluster| {
        json_api_files(&cluster.gateway_url(0), "alice-lib")
            .iter()
            .any(|file| file["filename"] == forged.filename.as_str())
    };
    loop {
        let refused = cluster
            .log(Role::Worker, 0)
            .lines()
            .any(|line| line.contains("refused a staged upload") && line.contains(&upload_id));
        if refused || committed(&cluster) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !committed(&cluster),
        "the forged upload was committed as Alice's: {:?}",
        json_api_files(&gateway, "alice-lib")
    );
    let log = cluster.log(Role::Worker, 0);
    let refusal = log
        .lines()
        .find(|line| line.contains("refused a staged upload") && line.contains(&upload_id))
        .unwrap_or_else(|| panic!("no refusal of {upload_id} in the worker's log:\n{log}"));
    assert!(refusal.contains("trace_id"), "{refusal}");
    // Nothing is deleted on a refusal: the staged bytes might be a genuine upload's.
    assert!(
        cluster
            .staging_objects()
            .contains(&format!("staging/{upload_id}")),
        "the refused event's staged bytes were deleted"
    );
    assert!(
        !simple_filenames(&simple_json(&gateway, "alice-lib")).contains(&forged.filename),
        "the simple page lists the forged file"
    );

    // A genuine upload still goes through.
    assert_ok(
        &upload(&gateway, &alice, &Dist::wheel("Alice-Lib", "2.0")),
        "Alice's next genuine upload",
    );
    let filenames = simple_filenames(&simple_json(&gateway, "alice-lib"));
    assert_eq!(filenames.len(), 2, "{filenames:?}");
}

/// `wharf verifier` on a non-loopback address without client certificate verification
/// refuses to start (exit 64, saying what to do) unless `--insecure-no-client-auth` waives
/// it; without an upload grant key neither the verifier nor a worker starts.
#[test]
fn exposed_verifiers_and_keyless_services_refuse_to_start() {
    let start = |args: &[&str]| {
        let mut command = Command::new(wharf_e2e::wharf_binary());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WHARF_") {
                command.env_remove(key);
            }
        }
        let output = command
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run wharf");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = start(&["verifier", "--listen", "0.0.0.0:0"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("without verifying its callers")
            && stderr.contains("--insecure-no-client-auth"),
        "{stderr}"
    );
    // Waived, it gets as far as the next requirement: its signing key.
    let (code, stderr) = start(&[
        "verifier",
        "--listen",
        "0.0.0.0:0",
        "--insecure-no-client-auth",
    ]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--upload-grant-key-file"), "{stderr}");
    let (code, stderr) = start(&["worker", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("--upload-grant-public-key-file"),
        "{stderr}"
    );
}

/// Two `wharf worker`s on one host with the default health listener (no `--listen`): each
/// binds a free port and prints it, and both become ready.
#[test]
fn two_workers_with_default_health_listeners_run_on_one_host() {
    let cluster = Cluster::builder()
        .workers(2)
        .gateways(0)
        .workers_without_listen()
        .start();
    let first = cluster.url(Role::Worker, 0);
    let second = cluster.url(Role::Worker, 1);
    assert_ne!(first, second, "each worker has its own port");
    for index in 0..2 {
        let (status, body) = cluster.readyz(Role::Worker, index).expect("readyz answers");
        assert_eq!(status, 200, "worker {index}: {body}");
        let log = cluster.log(Role::Worker, index);
        let address = cluster.url(Role::Worker, index).replace("http://", "");
        assert!(
            log.contains(&format!("wharf worker is running address={address}")),
            "worker {index} prints its address:\n{log}"
        );
    }
}
