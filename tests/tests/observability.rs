//! Observability of a real `wharf serve`: the spans its OTLP exporter sends to a real OTLP/gRPC
//! receiver (one trace per publish across gateway, verifier and worker, with correct parent
//! links; a refused token exchange traced with its PyPI error code; no secret in any exported
//! attribute or log line), the `X-Wharf-Trace-Id` header, and the `/metrics` counters.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use wharf_e2e::Registry;
use wharf_e2e::cluster::{Cluster, Role, http_get};
use wharf_e2e::dist::{Dist, Form, WheelBuilder, token_auth};
use wharf_e2e::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use wharf_e2e::raw_http::{RawResponse, request};

const TRACE_HEADER: &str = "x-wharf-trace-id";
const EXPORT_WAIT: Duration = Duration::from_secs(30);

fn upload(registry: &Registry, token: &str, form: &Form) -> RawResponse {
    upload_to(&registry.url(), token, form)
}

fn upload_to(base_url: &str, token: &str, form: &Form) -> RawResponse {
    let content_type = form.content_type();
    let auth = token_auth(token);
    request(
        base_url,
        "POST",
        "/legacy/",
        &[
            ("Content-Type", &content_type),
            ("User-Agent", "wharf-e2e"),
            ("Authorization", &auth),
        ],
        &form.body(),
    )
}

fn mint(registry: &Registry, body: &str) -> RawResponse {
    request(
        &registry.url(),
        "POST",
        "/_/oidc/mint-token",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

fn trace_id_of(response: &RawResponse) -> String {
    let trace_id = response
        .header(TRACE_HEADER)
        .unwrap_or_else(|| panic!("no {TRACE_HEADER} header (status {})", response.status))
        .to_owned();
    assert_eq!(trace_id.len(), 32, "trace id {trace_id:?}");
    assert!(trace_id.bytes().all(|byte| byte.is_ascii_hexdigit()));
    trace_id
}

fn start_traced() -> (OtlpReceiver, Registry) {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let registry = Registry::start_with_env(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            // Export quickly rather than every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", ""),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
        ],
    );
    (receiver, registry)
}

/// The one span named `name` in `spans`.
fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|span| span.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {name} span, got {}: {:#?}",
        found.len(),
        names(spans)
    );
    found[0]
}

fn names(spans: &[ReceivedSpan]) -> Vec<String> {
    spans
        .iter()
        .map(|span| {
            format!(
                "{} ({} <- {})",
                span.name, span.span_id, span.parent_span_id
            )
        })
        .collect()
}

/// Asserts that `child`'s parent is `parent`.
#[track_caller]
fn assert_parent(spans: &[ReceivedSpan], child: &str, parent: &str) {
    let child_span = one(spans, child);
    let parent_span = one(spans, parent);
    assert_eq!(
        child_span.parent_span_id,
        parent_span.span_id,
        "{child} should be a child of {parent}: {:#?}",
        names(spans)
    );
}

/// Asserts that `descendant` is below `ancestor` (through any number of spans).
#[track_caller]
fn assert_below(spans: &[ReceivedSpan], descendant: &str, ancestor: &str) {
    let by_id: HashMap<&str, &ReceivedSpan> = spans
        .iter()
        .map(|span| (span.span_id.as_str(), span))
        .collect();
    let target = one(spans, ancestor).span_id.as_str();
    let mut current = one(spans, descendant);
    loop {
        if current.parent_span_id == target {
            return;
        }
        match by_id.get(current.parent_span_id.as_str()) {
            Some(parent) => current = parent,
            None => panic!("{descendant} is not below {ancestor}: {:#?}", names(spans)),
        }
    }
}

/// No exported name, attribute, event or log line holds a token, a JWT or a macaroon.
#[track_caller]
fn assert_no_secrets(receiver: &OtlpReceiver, registry: &Registry, secrets: &[&str]) {
    let spans = receiver.spans();
    assert!(!spans.is_empty());
    for span in &spans {
        let mut texts: Vec<&str> = vec![span.name.as_str()];
        texts.extend(span.attributes.values().map(String::as_str));
        texts.extend(span.attributes.keys().map(String::as_str));
        texts.extend(span.event_texts.iter().map(String::as_str));
        for text in texts {
            for forbidden in ["pypi-", "eyJ"].iter().chain(secrets) {
                assert!(
                    !text.contains(forbidden),
                    "span {} exports {forbidden:?}: {text}",
                    span.name
                );
            }
        }
    }
    let log = registry.log();
    for forbidden in ["pypi-", "eyJ"].iter().chain(secrets) {
        assert!(
            !log.contains(forbidden),
            "the log contains {forbidden:?}:\n{log}"
        );
    }
}

#[test]
fn one_upload_is_one_trace_across_gateway_verifier_and_worker() {
    let (receiver, registry) = start_traced();
    let token = registry.user_with_token("alice", &[]);
    let dist = Dist::wheel("traced-demo", "1.0");
    let response = upload(&registry, &token, &dist.form());
    assert_eq!(response.status, 200, "{}", response.text());
    let trace_id = trace_id_of(&response);

    let spans = receiver.wait_for_trace(&trace_id, EXPORT_WAIT, |spans| {
        [
            "POST /legacy/",
            "worker.index_commit",
            "worker.process",
            "verifier.authorize_upload",
        ]
        .iter()
        .all(|name| spans.iter().any(|span| span.name == *name))
    });

    // The gateway's request span is the root; everything else hangs below it.
    // Span names follow the OTel conventions: `{method} {route}` and `{service}/{method}`.
    let root = one(&spans, "POST /legacy/");
    assert_eq!(
        root.parent_span_id, "",
        "the request span is the trace's root"
    );
    assert_eq!(root.attribute("http.route"), Some("/legacy/"));
    assert_eq!(root.attribute("http.response.status_code"), Some("200"));
    assert_eq!(root.kind, 2, "server span");
    assert_parent(&spans, "gateway.upload", "POST /legacy/");
    let upload_span = one(&spans, "gateway.upload");
    assert_eq!(upload_span.attribute("wharf.project"), Some("traced-demo"));
    assert_eq!(upload_span.attribute("wharf.outcome"), Some("accepted"));

    // Gateway → verifier over gRPC: client span, server span, handler span.
    assert_parent(
        &spans,
        "gateway.verifier.authorize_upload",
        "gateway.upload",
    );
    assert_parent(
        &spans,
        "wharf.v1.Verifier/AuthorizeUpload",
        "gateway.verifier.authorize_upload",
    );
    assert_parent(
        &spans,
        "verifier.authorize_upload",
        "wharf.v1.Verifier/AuthorizeUpload",
    );
    let authorize_server = one(&spans, "wharf.v1.Verifier/AuthorizeUpload");
    assert_eq!(authorize_server.kind, 2, "server span");
    assert_eq!(
        authorize_server.attribute("rpc.method"),
        Some("AuthorizeUpload")
    );
    assert_eq!(authorize_server.attribute("rpc.system"), Some("grpc"));
    // One question to the verifier per upload: one client span, and nothing else asked.
    let verifier_calls: Vec<&str> = spans
        .iter()
        .filter(|span| span.name.starts_with("gateway.verifier."))
        .map(|span| span.name.as_str())
        .collect();
    assert_eq!(verifier_calls, ["gateway.verifier.authorize_upload"]);
    let client = one(&spans, "gateway.verifier.authorize_upload");
    assert_eq!(client.kind, 3, "client span");
    assert_eq!(client.attribute("rpc.method"), Some("AuthorizeUpload"));
    assert_eq!(client.attribute("rpc.service"), Some("wharf.v1.Verifier"));

    // Gateway → worker over the bus: the worker's span is a child of the publishing span.
    assert_parent(&spans, "gateway.publish_staged", "gateway.upload");
    assert_parent(&spans, "worker.process", "gateway.publish_staged");
    let process = one(&spans, "worker.process");
    assert_eq!(process.attribute("wharf.outcome"), Some("published"));
    assert_eq!(process.kind, 5, "consumer span");
    assert_eq!(
        one(&spans, "gateway.publish_staged").kind,
        4,
        "producer span"
    );
    assert_parent(&spans, "worker.process_upload", "worker.process");
    assert_parent(&spans, "worker.hash", "worker.process_upload");
    assert_parent(&spans, "worker.inspect_archive", "worker.process_upload");
    assert_parent(&spans, "worker.store_file", "worker.process_upload");
    assert_parent(&spans, "worker.index_commit", "worker.process_upload");

    // Outcome back at the gateway: the wait links to the worker span that answered.
    let await_outcome = one(&spans, "gateway.await_outcome");
    assert_parent(&spans, "gateway.await_outcome", "gateway.upload");
    assert_eq!(
        await_outcome.links,
        vec![format!("{trace_id}:{}", process.span_id)]
    );

    // One process, one service name.
    assert!(spans.iter().all(|span| span.service == "wharf"));
    // No other trace holds spans of this upload.
    let upload_traces: HashSet<String> = receiver
        .spans()
        .into_iter()
        .filter(|span| span.name.starts_with("worker.") || span.name == "gateway.upload")
        .map(|span| span.trace_id)
        .collect();
    assert_eq!(upload_traces, HashSet::from([trace_id.clone()]));

    // A refused token exchange is a trace too, with PyPI's error code on its spans.
    let refused = mint(&registry, r#"{"token": "a.b.c"}"#);
    assert_eq!(refused.status, 422, "{}", refused.text());
    let mint_trace = trace_id_of(&refused);
    assert_eq!(
        refused.json()["trace_id"],
        serde_json::Value::from(mint_trace.as_str()),
        "the error body carries the trace id"
    );
    let mint_spans = receiver.wait_for_trace(&mint_trace, EXPORT_WAIT, |spans| {
        spans.iter().any(|span| span.name == "verifier.mint_token")
            && spans
                .iter()
                .any(|span| span.name == "POST /_/oidc/mint-token")
    });
    assert_eq!(
        one(&mint_spans, "verifier.mint_token").attribute("wharf.oidc.error"),
        Some("invalid-payload")
    );
    assert_eq!(
        one(&mint_spans, "gateway.oidc_mint_token").attribute("wharf.oidc.error"),
        Some("invalid-payload")
    );
    assert_below(
        &mint_spans,
        "verifier.mint_token",
        "gateway.verifier.mint_token",
    );

    // A JWT-shaped token never shows either.
    let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vcGUifQ.eyJpc3MiOiJodHRwczovL25vd2hlcmUuaW52YWxpZCJ9.c2lnbmF0dXJl";
    let refused = mint(&registry, &format!(r#"{{"token": "{jwt}"}}"#));
    assert_eq!(refused.status, 422, "{}", refused.text());
    let jwt_trace = trace_id_of(&refused);
    receiver.wait_for_trace(&jwt_trace, EXPORT_WAIT, |spans| {
        spans.iter().any(|span| span.name == "verifier.mint_token")
    });
    assert_no_secrets(&receiver, &registry, &[&token, jwt]);
}

/// The value of the sample `name` (with its labels, exactly as exposed), 0 when absent.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse::<f64>().expect("a number"))
        })
        .unwrap_or(0.0)
}

fn scrape(registry: &Registry) -> String {
    let response = request(&registry.url(), "GET", "/metrics", &[], &[]);
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/openmetrics-text")),
        "content type {:?}",
        response.header("content-type")
    );
    response.text()
}

#[test]
fn metrics_count_uploads_by_outcome() {
    let registry = Registry::start();
    let token = registry.user_with_token("alice", &[]);
    let before = scrape(&registry);

    let original = Dist::wheel("metrics-demo", "1.0");
    let published = upload(&registry, &token, &original.form());
    assert_eq!(published.status, 200, "{}", published.text());
    // Without an exporter the trace id is still there.
    trace_id_of(&published);
    let changed = WheelBuilder::new("metrics-demo", "1.0")
        .greeting("changed")
        .build();
    let rejected = upload(&registry, &token, &changed.form());
    assert_eq!(rejected.status, 400, "{}", rejected.reason);

    let after = scrape(&registry);
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(
        moved("wharf_uploads_total{outcome=\"published\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        moved("wharf_uploads_total{outcome=\"rejected\",status=\"400\"}"),
        1.0
    );
    assert_eq!(
        moved("wharf_worker_outcomes_total{outcome=\"published\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        moved("wharf_worker_outcomes_total{outcome=\"rejected\",status=\"400\"}"),
        1.0
    );
    assert_eq!(moved("wharf_bus_deliveries_total"), 2.0);
    assert_eq!(moved("wharf_bus_redeliveries_total"), 0.0);
    assert_eq!(
        moved("wharf_upload_received_bytes_total"),
        (original.size() + changed.size()) as f64
    );
    assert_eq!(moved("wharf_stored_bytes_total"), original.size() as f64);
    // One verifier call per upload.
    assert_eq!(
        moved("wharf_upload_stage_duration_seconds_count{stage=\"verifier\"}"),
        2.0
    );
    assert_eq!(
        moved("wharf_upload_stage_duration_seconds_count{stage=\"stage_file\"}"),
        2.0
    );
    assert_eq!(
        moved("wharf_upload_stage_duration_seconds_count{stage=\"await_outcome\"}"),
        2.0
    );
    assert_eq!(
        moved("wharf_upload_stage_duration_seconds_count{stage=\"index_commit\"}"),
        1.0
    );

    let simple = request(&registry.url(), "GET", "/simple/metrics-demo/", &[], &[]);
    assert_eq!(simple.status, 200);
    // Unchanged since: the same page again, from the page cache.
    let again = request(&registry.url(), "GET", "/simple/metrics-demo/", &[], &[]);
    assert_eq!(again.body, simple.body);
    let refused = mint(&registry, r#"{"token": "a.b.c"}"#);
    assert_eq!(refused.status, 422);
    let last = scrape(&registry);
    let moved = |name: &str| sample(&last, name) - sample(&after, name);
    assert_eq!(moved("wharf_simple_requests_total{page=\"project\"}"), 2.0);
    assert_eq!(moved("wharf_simple_cache_total{result=\"miss\"}"), 1.0);
    assert_eq!(moved("wharf_simple_cache_total{result=\"hit\"}"), 1.0);
    assert_eq!(
        moved("wharf_oidc_mint_total{outcome=\"refused\",code=\"invalid-payload\"}"),
        1.0
    );
}

/// The scaled mode: gateway, verifier and worker are three processes exporting on their own,
/// and one publish is still one trace, the context crossing gRPC and the bus.
#[test]
fn one_upload_in_scaled_mode_is_one_trace_across_three_processes() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let cluster = Cluster::builder()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_TRACES_SAMPLER", "parentbased_always_on")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .start();
    let token = cluster.user_with_token("alice");
    let dist = Dist::wheel("scaled-traced", "1.0");
    let response = upload_to(&cluster.gateway_url(0), &token, &dist.form());
    assert_eq!(response.status, 200, "{}", response.text());
    let trace_id = trace_id_of(&response);

    // Every span asserted on below; a parent ends (and is exported) after its children.
    let spans = receiver.wait_for_trace(&trace_id, EXPORT_WAIT, |spans| {
        [
            "POST /legacy/",
            "gateway.verifier.authorize_upload",
            "wharf.v1.Verifier/AuthorizeUpload",
            "verifier.authorize_upload",
            "worker.process",
            "worker.index_commit",
        ]
        .iter()
        .all(|name| spans.iter().any(|span| span.name == *name))
    });
    let service_of = |name: &str| one(&spans, name).service.clone();
    assert_eq!(service_of("POST /legacy/"), "wharf-gateway");
    assert_eq!(service_of("verifier.authorize_upload"), "wharf-verifier");
    assert_eq!(service_of("worker.process"), "wharf-worker");
    assert_eq!(service_of("worker.index_commit"), "wharf-worker");
    assert_eq!(
        one(&spans, "POST /legacy/").parent_span_id,
        "",
        "the request is the root"
    );
    // Across the network: gRPC client span → the verifier's server span, and the staged
    // event's context → the worker's consumer span.
    assert_parent(
        &spans,
        "wharf.v1.Verifier/AuthorizeUpload",
        "gateway.verifier.authorize_upload",
    );
    assert_below(&spans, "verifier.authorize_upload", "POST /legacy/");
    assert_below(&spans, "worker.process", "POST /legacy/");
    assert_below(&spans, "worker.index_commit", "worker.process");
    let services: HashSet<&str> = spans.iter().map(|span| span.service.as_str()).collect();
    assert_eq!(
        services,
        HashSet::from(["wharf-gateway", "wharf-verifier", "wharf-worker"]),
        "one trace holds spans from all three services"
    );
    // The same processes export their metrics over OTLP (cumulative sums, sampled gauges),
    // and serve them at /metrics.
    let published = [("outcome", "published"), ("status", "200")];
    let wait =
        |service: &str, metric: &str, attributes: &[(&str, &str)], ready: &dyn Fn(f64) -> bool| {
            receiver.wait_for_point(service, metric, attributes, EXPORT_WAIT, ready)
        };
    wait("wharf-gateway", "wharf.uploads", &published, &|value| {
        value == 1.0
    });
    wait(
        "wharf-worker",
        "wharf.worker_outcomes",
        &published,
        &|value| value == 1.0,
    );
    wait("wharf-worker", "wharf.stored", &[], &|value| {
        value == dist.size() as f64
    });
    wait(
        "wharf-worker",
        "wharf.upload_stage_duration",
        &[("stage", "hash")],
        &|value| value == 1.0,
    );
    wait(
        "wharf-worker",
        "wharf.bus_consumer_messages",
        &[("state", "pending")],
        &|value| value == 0.0,
    );
    wait(
        "wharf-verifier",
        "wharf.db_pool_connections",
        &[("state", "max")],
        &|value| value >= 1.0,
    );
    let (status, body) =
        http_get(&format!("{}/metrics", cluster.url(Role::Worker, 0))).expect("worker /metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    for gauge in [
        "wharf_bus_consumer_messages{state=\"pending\"} 0",
        "wharf_bus_consumer_messages{state=\"ack_pending\"} ",
        "wharf_db_pool_connections{state=\"max\"} ",
        "wharf_db_pool_connections{state=\"in_use\"} ",
    ] {
        assert!(
            text.contains(gauge),
            "no {gauge:?} in the worker's metrics:\n{text}"
        );
    }

    // `WHARF_TRACE_DUMP=<file>` keeps the trace for docs/tools/waterfall.py.
    if let Some(path) = std::env::var_os("WHARF_TRACE_DUMP") {
        wharf_e2e::otlp_receiver::dump_spans(&spans, std::path::Path::new(&path))
            .expect("write the span dump");
    }
}

/// The lines of `registry`'s log that carry `trace_id` and say `message`, once at least one
/// is there (the worker may log a moment after the gateway answered).
fn log_lines_of(registry: &Registry, trace_id: &str, message: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + EXPORT_WAIT;
    loop {
        let lines: Vec<String> = registry
            .log()
            .lines()
            .filter(|line| line.contains(&format!("trace_id={trace_id}")) && line.contains(message))
            .map(str::to_owned)
            .collect();
        if !lines.is_empty() || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_publish_and_a_refusal_each_log_one_line_with_the_clients_trace_id() {
    let registry = Registry::start();
    let token = registry.user_with_token("alice", &[]);

    // A publish: one INFO line with what was published, by whom, in the client's trace.
    let dist = Dist::wheel("Logged-Demo", "1.0");
    let published = upload(&registry, &token, &dist.form());
    assert_eq!(published.status, 200, "{}", published.text());
    let trace_id = trace_id_of(&published);
    let lines = log_lines_of(&registry, &trace_id, "file published");
    assert_eq!(lines.len(), 1, "{lines:#?}\n{}", registry.log());
    for field in [
        " INFO ".to_owned(),
        "project=Logged-Demo".to_owned(),
        "version=1.0".to_owned(),
        format!("filename={}", dist.filename),
        format!("size={}", dist.size()),
        format!("sha256={}", dist.sha256()),
        "by=alice".to_owned(),
    ] {
        assert!(lines[0].contains(&field), "{field:?} missing: {}", lines[0]);
    }
    // An identical re-upload commits nothing, so it logs no publish.
    let again = upload(&registry, &token, &dist.form());
    assert_eq!(again.status, 200);
    let again_trace = trace_id_of(&again);
    assert!(
        !registry
            .log()
            .lines()
            .any(|line| line.contains(&again_trace) && line.contains(" INFO ")),
        "{}",
        registry.log()
    );

    // A refused upload: one line with the code and PyPI's reason.
    let changed = WheelBuilder::new("Logged-Demo", "1.0")
        .greeting("other bytes")
        .build();
    let refused = upload(&registry, &token, &changed.form());
    assert_eq!(refused.status, 400, "{}", refused.text());
    let trace_id = trace_id_of(&refused);
    let lines = log_lines_of(&registry, &trace_id, "upload refused");
    assert_eq!(lines.len(), 1, "{lines:#?}\n{}", registry.log());
    assert!(lines[0].contains("code=invalid-request"), "{}", lines[0]);
    assert!(lines[0].contains("File already exists"), "{}", lines[0]);
    assert_eq!(
        registry.log().matches(&trace_id).count(),
        1,
        "one line in the refusal's trace:\n{}",
        registry.log()
    );

    // A refused token exchange: one line with PyPI's error code, never the token.
    let exchange = mint(&registry, r#"{"token": "not-a-jwt-but-secret-3f9a"}"#);
    assert_eq!(exchange.status, 422, "{}", exchange.text());
    let trace_id = trace_id_of(&exchange);
    let lines = log_lines_of(&registry, &trace_id, "token exchange refused");
    assert_eq!(lines.len(), 1, "{lines:#?}\n{}", registry.log());
    assert!(lines[0].contains("code=invalid-payload"), "{}", lines[0]);
    let log = registry.log();
    assert!(!log.contains("not-a-jwt-but-secret-3f9a"), "{log}");
    assert!(!log.contains(&token), "{log}");
}

/// The access lines (`--access-log`, target `wharf::access`) in `registry`'s log of the
/// request whose trace is `trace_id`, once at least one is there: each is written when its
/// response body has been sent.
fn access_lines(registry: &Registry, trace_id: &str) -> Vec<String> {
    log_lines_of(registry, trace_id, " wharf::access: ")
}

#[test]
fn the_access_log_has_one_line_per_request_with_the_clients_trace_id_and_no_secret() {
    const QUERY_SECRET: &str = "query-secret-5b1e";
    const AUTH_SECRET: &str = "Basic YWNjZXNzLXNlY3JldC03YzQ=";
    let registry = Registry::start_with(&["--access-log", "--client-ip-header", "X-Forwarded-For"]);
    let token = registry.user_with_token("alice", &[]);
    let proxied = [
        ("X-Forwarded-For", "198.51.100.1, 203.0.113.7"),
        ("Authorization", AUTH_SECRET),
    ];

    // A simple page, asked with a query string and credentials that must not be logged.
    let page = request(
        &registry.url(),
        "GET",
        &format!("/simple/?token={QUERY_SECRET}"),
        &proxied,
        b"",
    );
    assert_eq!(page.status, 200, "{}", page.text());
    // A refused upload (a token that is no token).
    let dist = Dist::wheel("Access-Demo", "1.0");
    let refused = upload(&registry, "pypi-not-a-token-at-all", &dist.form());
    assert_eq!(refused.status, 403, "{}", refused.text());
    // No route.
    let missing = request(&registry.url(), "GET", "/no/such/page", &proxied, b"");
    assert_eq!(missing.status, 404);
    // A download, streamed from the store.
    assert_eq!(upload(&registry, &token, &dist.form()).status, 200);
    let path = format!("/packages/{}", dist.digests().storage_path(&dist.filename));
    let download = request(&registry.url(), "GET", &path, &[], b"");
    assert_eq!(download.status, 200);

    for (response, method, route, status, bytes) in [
        (&page, "GET", "/simple/", 200, page.body.len()),
        (&refused, "POST", "/legacy/", 403, refused.body.len()),
        (&missing, "GET", "", 404, missing.body.len()),
        (&download, "GET", "/packages/{*path}", 200, dist.size()),
    ] {
        let trace_id = trace_id_of(response);
        let lines = access_lines(&registry, &trace_id);
        assert_eq!(lines.len(), 1, "{lines:#?}\n{}", registry.log());
        for field in [
            " INFO ".to_owned(),
            format!("method={method}"),
            format!("route=\"{route}\""),
            format!("status={status}"),
            format!("bytes={bytes}"),
            "duration_ms=".to_owned(),
            "complete=true".to_owned(),
            format!(" trace_id={trace_id} "),
        ] {
            assert!(lines[0].contains(&field), "{field:?} missing: {}", lines[0]);
        }
    }
    // The client IP as the gateway determines it: the trusted header's last entry, else the
    // peer.
    let page_line = &access_lines(&registry, &trace_id_of(&page))[0];
    assert!(page_line.contains("client_ip=203.0.113.7"), "{page_line}");
    let download_line = &access_lines(&registry, &trace_id_of(&download))[0];
    assert!(
        download_line.contains("client_ip=127.0.0.1"),
        "{download_line}"
    );

    let log = registry.log();
    // One line per request (the two uploads, the two pages, the download), none of a probe.
    assert_eq!(log.matches(" wharf::access: ").count(), 5, "{log}");
    for secret in [QUERY_SECRET, AUTH_SECRET, "YWNjZXNzLXNlY3JldC03YzQ", &token] {
        assert!(!log.contains(secret), "the log contains {secret:?}:\n{log}");
    }

    // Off by default: the same requests leave no access line (each is written before the
    // connection closes, so a response read to its end would have left one).
    let quiet = Registry::start();
    for path in ["/simple/", "/no/such/page"] {
        let response = request(&quiet.url(), "GET", path, &[], b"");
        trace_id_of(&response);
    }
    assert!(!quiet.log().contains("wharf::access"), "{}", quiet.log());
}
