#!/usr/bin/env python3
"""Runs the `make bench` scenarios against Wharf (embedded and scaled) and pypiserver.

Started by scripts/bench.sh, which installs wrk and the peer's venv, builds the release
binaries and the corpus first. Every scenario runs each target in turn (embedded, scaled,
peer), so slow drift of the machine falls on all three alike. Results go to
bench/results/latest.json; docs/benchmarks.md is rendered from them.

Standard library only: it runs on the system Python.
"""

import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHARF = ROOT / "target/release/wharf"
BENCH = ROOT / "target/release/wharf-bench"
VENV = ROOT / "bench/.venv"
CORPUS = ROOT / "bench/.corpus"
WORK = ROOT / "bench/.work"
RESULTS = ROOT / "bench/results/latest.json"
DOC = ROOT / "docs/benchmarks.md"

READ_SECONDS = int(os.environ.get("BENCH_READ_SECONDS", "20"))
DOWNLOAD_SECONDS = int(os.environ.get("BENCH_DOWNLOAD_SECONDS", "10"))
MINT_REQUESTS = int(os.environ.get("BENCH_MINT_REQUESTS", "6000"))
MANY_FILES_PROJECT = "bench-many"
MAX_FILE_SIZE = "2GiB"
PEER_USER, PEER_PASSWORD = "bench", "bench-peer-password"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(url, headers=None, timeout=10):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def wait_ready(url, process, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}) before {url} answered")
        try:
            if http_get(url, timeout=2)[0] == 200:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


def stop(process, timeout=90):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def peak_rss_mib(pid):
    """VmHWM of a process: its peak resident set since it started, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def child_pids(pid):
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class Target:
    """A registry under test: `start()` brings it up empty, `stop()` ends it."""

    upload_user = "__token__"

    def upload_url(self):
        return f"{self.base}/legacy/"

    def stop(self):
        stop(self.process)
        self.log.close()


# One load generator on loopback is one client IP with one token: the per-IP and per-token
# limits (and PyPI's new-project limits) would measure the limiter, not the registry.
NO_RATE_LIMITS = {"WHARF_UPLOAD_RATE_LIMIT": "0", "WHARF_UPLOAD_TOKEN_RATE_LIMIT": "0",
                  "WHARF_MINT_TOKEN_RATE_LIMIT": "0", "WHARF_NEW_PROJECT_RATE_LIMIT": "0",
                  "WHARF_NEW_PROJECT_IP_RATE_LIMIT": "0",
                  "WHARF_MINT_TOKEN_IDENTITY_RATE_LIMIT": "0"}


class Embedded(Target):
    """`wharf serve`: SQLite, local files, the in-process bus; one process."""

    name = "embedded"

    def start(self):
        self.dir = fresh_dir(WORK / "embedded")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.admin_env = {"WHARF_DATA_DIR": str(self.dir / "data")}
        self.log = open(self.dir / "serve.log", "w")
        self.process = subprocess.Popen(
            [WHARF, "serve", "--listen", f"127.0.0.1:{self.port}"],
            env={**os.environ, **self.admin_env, **NO_RATE_LIMITS,
                 "WHARF_MAX_FILE_SIZE": MAX_FILE_SIZE, "RUST_LOG": "warn"},
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        wait_ready(f"{self.base}/readyz", self.process)
        self.password = wharf_token(self.admin_env)

    def processes(self):
        return {"wharf serve": self.process.pid}


class Scaled(Target):
    """scripts/cluster.sh: PostgreSQL + NATS, 1 gateway, 1 verifier, 2 workers, a shared
    local store directory (no S3 emulator in the measurement)."""

    name = "scaled"
    database = "wharf_bench"

    def start(self):
        self.dir = fresh_dir(WORK / "scaled")
        gateway, verifier = free_port(), free_port()
        workers = [free_port(), free_port()]
        self.base = f"http://127.0.0.1:{gateway}"
        self.admin_env = {"WHARF_DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.database}"}
        self.log = open(self.dir / "cluster.log", "w")
        self.process = subprocess.Popen(
            [ROOT / "scripts/cluster.sh"],
            env={**os.environ, **NO_RATE_LIMITS,
                 "WHARF_BIN": str(WHARF), "CLUSTER_STORE": f"file://{self.dir / 'store'}",
                 "CLUSTER_LOG_DIR": str(self.dir / "logs"), "CLUSTER_DB": self.database,
                 "CLUSTER_NATS_PREFIX": "wharf-bench", "CLUSTER_GATEWAY_PORTS": str(gateway),
                 "CLUSTER_VERIFIER_PORT": str(verifier),
                 "CLUSTER_WORKER_PORTS": " ".join(map(str, workers)),
                 "WHARF_MAX_FILE_SIZE": MAX_FILE_SIZE, "RUST_LOG": "warn"},
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        (self.dir / "store").mkdir()
        wait_ready(f"{self.base}/readyz", self.process, timeout=120)
        self.password = wharf_token(self.admin_env)

    def processes(self):
        names = {}
        for pid in child_pids(self.process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if len(command) > 1 and command[0].endswith(b"wharf"):
                role = command[1].decode()
                count = sum(1 for name in names if name.startswith(role))
                names[f"{role}-{count + 1}" if role == "worker" else role] = pid
        return names


class Peer(Target):
    """pypiserver with its default backend, htpasswd-authenticated uploads, on waitress."""

    name = "pypiserver"
    upload_user = PEER_USER
    password = PEER_PASSWORD

    def start(self):
        self.dir = fresh_dir(WORK / "pypiserver")
        packages = fresh_dir(self.dir / "packages")
        htpasswd = self.dir / "htpasswd"
        subprocess.run(
            [VENV / "bin/python", "-c",
             "import sys\nfrom passlib.apache import HtpasswdFile\n"
             "h = HtpasswdFile(sys.argv[1], new=True)\nh.set_password(sys.argv[2], sys.argv[3])\nh.save()",
             htpasswd, PEER_USER, PEER_PASSWORD], check=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(self.dir / "pypiserver.log", "w")
        self.process = subprocess.Popen(
            [VENV / "bin/pypi-server", "run", "--host", "127.0.0.1", "--port", str(self.port),
             "--authenticate", "update", "--passwords", htpasswd, "--disable-fallback",
             "--server", "auto", packages],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        wait_ready(f"{self.base}/simple/", self.process)

    def processes(self):
        return {"pypi-server": self.process.pid}

    def upload_url(self):
        return f"{self.base}/"


def wharf_token(admin_env):
    env = {**os.environ, **admin_env}
    subprocess.run([WHARF, "admin", "user", "create", "bench"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return subprocess.run([WHARF, "admin", "token", "create", "--user", "bench"], env=env,
                          check=True, capture_output=True, text=True).stdout.strip()


def bench_tool(args, env=None):
    output = subprocess.run([BENCH, *args], env={**os.environ, **(env or {})}, check=True,
                            capture_output=True, text=True)
    return json.loads(output.stdout)


def upload(target, manifest, concurrency):
    report = bench_tool(
        ["upload", "--url", target.upload_url(), "--manifest", manifest, "--concurrency",
         str(concurrency), "--username", target.upload_user],
        env={"WHARF_BENCH_PASSWORD": target.password})
    report["peak_rss_mib"] = {name: peak_rss_mib(pid) for name, pid in target.processes().items()}
    log(f"{target.name}: upload x{concurrency}: {report['files_per_s']:.1f} files/s, "
        f"{report['mb_per_s']:.1f} MB/s, {report['errors']} errors, "
        f"peak RSS {sum(report['peak_rss_mib'].values()):.0f} MiB")
    if report["failures"]:
        log(f"  failures: {report['failures']}")
    return report


WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url, seconds, headers=()):
    command = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    text = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    latency = {f"p{p}_ms": float(value) * UNITS[unit] for p, value, unit in WRK_LATENCY.findall(text)}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "transfer_mb_per_s": transfer_mb(re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", text)),
        **latency,
        "errors": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
    }


def transfer_mb(match):
    value, unit = float(match.group(1)), match.group(2)
    return value * {"B": 1e-6, "KB": 1.024e-3, "MB": 1.048576, "GB": 1073.741824}[unit]


def file_url(target, project, filename):
    """The download link a simple page gives for `filename`."""
    page = f"{target.base}/simple/{project}/"
    body = http_get(page)[2].decode()
    for href in re.findall(r'href="([^"]+)"', body):
        url = urllib.parse.urljoin(page, href).split("#")[0]
        if url.rsplit("/", 1)[-1] == filename:
            return url
    raise RuntimeError(f"{filename} is not on {page}")


def read_scenarios(targets, corpus):
    small = min((f for f in corpus if f["name"] != MANY_FILES_PROJECT), key=lambda f: f["size"])
    ten_mb = next(f for f in corpus if f["size"] >= 10_000_000 and f["size"] < 10_100_000)
    reads = {}
    cases = [
        ("simple_many_html", lambda t: f"{t.base}/simple/{MANY_FILES_PROJECT}/", (), READ_SECONDS),
        ("simple_many_json", lambda t: f"{t.base}/simple/{MANY_FILES_PROJECT}/",
         (f"Accept: {JSON_ACCEPT}",), READ_SECONDS),
        ("simple_root", lambda t: f"{t.base}/simple/", (), READ_SECONDS),
        ("download_small", lambda t: file_url(t, small["name"], small["filename"]), (), DOWNLOAD_SECONDS),
        ("download_10mb", lambda t: file_url(t, ten_mb["name"], ten_mb["filename"]), (), DOWNLOAD_SECONDS),
    ]
    for case, url_of, headers, seconds in cases:
        reads[case] = {}
        for target in targets:
            url = url_of(target)
            content_type = http_get(url, dict(h.split(": ", 1) for h in headers))[1]
            result = wrk(url, seconds, headers)
            result["content_type"] = content_type.split(";")[0]
            reads[case][target.name] = result
            log(f"{target.name}: {case}: {result['requests_per_s']:.0f} req/s, "
                f"p99 {result.get('p99_ms', 0):.2f} ms, {result['errors']} errors")
    reads["files"] = {"small": small["filename"], "small_bytes": small["size"],
                      "ten_mb": ten_mb["filename"], "ten_mb_bytes": ten_mb["size"]}
    return reads


def mint(target):
    report = bench_tool(["mint", "--url", target.base, "--wharf-bin", WHARF, "--project",
                         MANY_FILES_PROJECT, "--requests", str(MINT_REQUESTS)],
                        env=target.admin_env)
    log(f"{target.name}: mint: {report['exchanges_per_s']:.0f}/s, p99 "
        f"{report['latency']['p99_ms']:.1f} ms, {report['errors']} errors")
    if report["failures"]:
        log(f"  failures: {report['failures']}")
    return report


def hashing():
    """The criterion bench of the digest pipeline and `openssl dgst` over the same bytes, each
    pinned to one core."""
    size = 256 << 20
    data = Path("/dev/shm/wharf-bench-hash.bin")
    with open(data, "wb") as out:
        out.write(os.urandom(size))
    try:
        built = subprocess.run(
            ["cargo", "bench", "-p", "wharf-archive", "--bench", "hashing", "--no-run",
             "--message-format=json"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
        executable = next(m["executable"] for m in map(json.loads, built.splitlines())
                          if m.get("reason") == "compiler-artifact" and m.get("executable")
                          and m["target"]["name"] == "hashing")
        criterion_home = fresh_dir(WORK / "criterion")
        subprocess.run(["taskset", "-c", "1", executable, "--bench"], check=True,
                       env={**os.environ, "WHARF_BENCH_HASH_INPUT": str(data),
                            "CRITERION_HOME": str(criterion_home)},
                       stdout=subprocess.DEVNULL)
        rates = {}
        for bench in ("multihasher", "md5", "sha256", "blake2b256"):
            estimates = json.loads((criterion_home / "hashing" / bench / "new/estimates.json").read_text())
            rates[bench] = size / 1e6 / (estimates["mean"]["point_estimate"] / 1e9)
        openssl = {}
        for digest in ("md5", "sha256", "blake2b512"):
            best = float("inf")
            for _ in range(3):
                began = time.perf_counter()
                subprocess.run(["taskset", "-c", "1", "openssl", "dgst", f"-{digest}", data],
                               check=True, stdout=subprocess.DEVNULL)
                best = min(best, time.perf_counter() - began)
            openssl[digest] = best
        limit = size / 1e6 / sum(openssl.values())
        result = {
            "bytes": size,
            "criterion_mb_per_s": rates,
            "openssl_seconds": openssl,
            "openssl_mb_per_s": {d: size / 1e6 / s for d, s in openssl.items()},
            "openssl_single_pass_limit_mb_per_s": limit,
            "fraction_of_limit": rates["multihasher"] / limit,
        }
        log(f"hashing: pipeline {rates['multihasher']:.0f} MB/s, openssl limit {limit:.0f} MB/s "
            f"({result['fraction_of_limit']:.0%})")
        return result
    finally:
        data.unlink(missing_ok=True)


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    memory = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    release = dict(line.rstrip().split("=", 1) for line in open("/etc/os-release") if "=" in line)

    def version(command):
        try:
            return subprocess.run(command, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "unknown"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 1024 / 1024, 1),
        "os": release.get("PRETTY_NAME", "").strip('"'),
        "kernel": platform.release(),
        "rustc": version(["rustc", "--version"]),
        "wharf_commit": version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "pypiserver": version([VENV / "bin/pypi-server", "--version"]),
        "wrk": version(["wrk", "--version"]).split(" [")[0],
        "openssl": version(["openssl", "version"]),
    }


def main():
    started = time.monotonic()
    corpus_manifest = CORPUS / "files.json"
    huge_manifest = CORPUS / "huge.json"
    corpus = json.loads(corpus_manifest.read_text())["files"]
    targets = [Embedded(), Scaled(), Peer()]
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "corpus": {"files": len(corpus), "bytes": sum(f["size"] for f in corpus),
                   "wheels": sum(f["filetype"] == "bdist_wheel" for f in corpus),
                   "huge_bytes": sum(f["size"] for f in json.loads(huge_manifest.read_text())["files"])},
        "publish": {"1": {}, "8": {}},
    }
    # 1. Publish with 1 uploader, each target from empty.
    for target in targets:
        target.start()
        try:
            results["publish"]["1"][target.name] = upload(target, corpus_manifest, 1)
        finally:
            target.stop()
    # 1 (again, 8 uploaders); the registries stay up, filled, for the read scenarios.
    running = []
    try:
        for target in targets:
            target.start()
            running.append(target)
            results["publish"]["8"][target.name] = upload(target, corpus_manifest, 8)
        # 2 and 3. Simple pages and downloads.
        results["reads"] = read_scenarios(targets, corpus)
        # 4. Mint-token exchanges (Wharf only).
        results["mint"] = {t.name: mint(t) for t in targets if t.name != "pypiserver"}
    finally:
        for target in running:
            target.stop()
    # 5. Peak RSS while the 1 GiB wheel is published, each target from empty.
    results["huge"] = {}
    for target in targets:
        target.start()
        try:
            results["huge"][target.name] = upload(target, huge_manifest, 1)
        finally:
            target.stop()
    # 6. Hashing.
    results["hashing"] = hashing()
    results["duration_s"] = round(time.monotonic() - started)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    subprocess.run([sys.executable, ROOT / "bench/render.py", RESULTS, DOC], check=True)
    log(f"done in {results['duration_s']} s: {RESULTS.relative_to(ROOT)}, {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
