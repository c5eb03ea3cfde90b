//! What the fixtures share: a blocking runtime, URL surgery, process signals, log files and
//! a blocking HTTP client.

use std::future::Future;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(super) const HOW_TO_START: &str = "start PostgreSQL and NATS with `make services` \
     (scripts/ensure-services.sh)";

/// Runs `future` to completion on a fresh single-threaded runtime.
pub(super) fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Splits `scheme://authority/rest` into (`scheme://`, authority, `/rest`).
pub(super) fn split_url(url: &str) -> (&str, &str, &str) {
    let scheme_end = url.find("://").map_or(0, |index| index + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    (
        &url[..scheme_end],
        &rest[..authority_end],
        &rest[authority_end..],
    )
}

/// `host:port` of a URL (without user info); `default_port` when it names none.
pub(super) fn host_port(url: &str, default_port: u16) -> String {
    let (_, authority, _) = split_url(url);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    }
}

/// `url` with its host and port replaced by `address` (user info kept).
pub(super) fn with_address(url: &str, address: &str) -> String {
    let (scheme, authority, rest) = split_url(url);
    match authority.rsplit_once('@') {
        Some((user_info, _)) => format!("{scheme}{user_info}@{address}{rest}"),
        None => format!("{scheme}{address}{rest}"),
    }
}

/// `url` naming database `name` instead of its own.
pub(super) fn with_database(url: &str, name: &str) -> String {
    let (scheme, authority, rest) = split_url(url);
    let query = rest.find('?').map_or("", |index| &rest[index..]);
    format!("{scheme}{authority}/{name}{query}")
}

pub(super) fn tcp_reachable(address: &str) -> Result<(), String> {
    let addresses: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|error| error.to_string())?
        .collect();
    let mut last = format!("{address} resolves to no address");
    for socket in addresses {
        match TcpStream::connect_timeout(&socket, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(error) => last = error.to_string(),
        }
    }
    Err(last)
}

/// Sends `signal` (`TERM`, `KILL`, …) to a process.
pub(super) fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `timeout` for `child` to exit; its exit status if it did.
pub(super) fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `lines` lines of a text.
pub(super) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(super) fn append_log(path: &Path) -> (std::fs::File, std::fs::File) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", path.display()));
    let log_err = log.try_clone().expect("log file handle");
    (log, log_err)
}

/// An HTTP agent with a timeout that returns non-2xx responses instead of errors.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// GET `url`: status and body, or the connection error.
pub fn http_get(url: &str) -> Result<(u16, Vec<u8>), String> {
    http_get_with(url, &[])
}

/// GET `url` with extra headers: status and body, or the connection error.
pub fn http_get_with(url: &str, headers: &[(&str, &str)]) -> Result<(u16, Vec<u8>), String> {
    let mut request = http_agent(Duration::from_secs(30)).get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_vec()
        .map_err(|error| error.to_string())?;
    Ok((status, body))
}
