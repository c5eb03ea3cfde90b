"""Usage: python3 scripts/body-flood.py WHARF_BINARY PORT
RSS of `wharf serve` before and after three 400 MiB bodies to /_/oidc/mint-token.
Each body is sent with Content-Length (as an attacker would) as fast as the server reads it."""
import os, socket, subprocess, sys, tempfile, time, threading

binary = sys.argv[1]
port = int(sys.argv[2])
data = tempfile.mkdtemp()
server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def rss():
    with open(f"/proc/{server.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
def peak():
    with open(f"/proc/{server.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
for _ in range(600):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
    except OSError:
        time.sleep(0.1)
time.sleep(1)
before = rss()
SIZE = 400 * 1024 * 1024
chunk = b" " * (1024 * 1024)
def flood():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"POST /_/oidc/mint-token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {SIZE}\r\n\r\n".encode())
    sent = 0
    try:
        while sent < SIZE:
            s.sendall(chunk); sent += len(chunk)
    except OSError:
        pass
    s.settimeout(60)
    try:
        answer = s.recv(200).split(b"\r\n")[0].decode()
    except OSError as e:
        answer = f"({e})"
    s.close()
    return sent, answer
results = []
threads = [threading.Thread(target=lambda: results.append(flood())) for _ in range(3)]
for t in threads: t.start()
for t in threads: t.join()
time.sleep(1)
print(f"{os.path.basename(binary)}: RSS before {before} MiB, after {rss()} MiB, peak {peak()} MiB; "
      f"sent/answer per body: {[(s // (1024*1024), a) for s, a in results]}")
server.terminate(); server.wait()
