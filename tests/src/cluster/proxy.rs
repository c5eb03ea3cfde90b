//! A TCP proxy whose connections a test can cut and restore (an outage of the server behind it).

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A TCP proxy from a free local port to `upstream`, whose connections a test can cut (every
/// open connection is reset and new ones are closed at once, as if the server were gone) and
/// restore.
#[derive(Debug)]
pub struct TcpProxy {
    port: u16,
    state: Arc<ProxyState>,
    accept_thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct ProxyState {
    upstream: String,
    up: AtomicBool,
    stopping: AtomicBool,
    connections: Mutex<Vec<TcpStream>>,
}

impl ProxyState {
    fn cut_all(&self) {
        let connections = std::mem::take(
            &mut *self
                .connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for connection in connections {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

impl TcpProxy {
    /// Starts forwarding a free port to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            up: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        let accept_state = Arc::clone(&state);
        let accept_thread = std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if accept_state.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = incoming else { continue };
                if !accept_state.up.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                relay(&accept_state, client);
            }
        });
        TcpProxy {
            port,
            state,
            accept_thread: Some(accept_thread),
        }
    }

    /// `127.0.0.1:<port>`, the address to connect to instead of the upstream.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Resets every open connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.state.up.store(false, Ordering::SeqCst);
        self.state.cut_all();
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.state.up.store(true, Ordering::SeqCst);
    }
}

fn relay(state: &Arc<ProxyState>, client: TcpStream) {
    let Some(server) = state
        .upstream
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .and_then(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok())
    else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let clones = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    );
    let (Ok(client_read), Ok(server_write), Ok(client_track), Ok(server_track)) = clones else {
        return;
    };
    {
        let mut connections = state
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        connections.retain(|connection| connection.peer_addr().is_ok());
        connections.push(client_track);
        connections.push(server_track);
    }
    let pump = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    };
    pump(client_read, server_write);
    pump(server, client);
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        self.state.cut_all();
        // Wake the accept loop so it sees `stopping`.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}
