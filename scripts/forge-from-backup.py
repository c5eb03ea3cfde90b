"""Usage: tests/.venv/bin/python scripts/forge-from-backup.py WHARF_BINARY PORT
Issue #12, finding 12: can a copy of the database forge an API token? Starts `wharf serve`,
creates a user and a token, copies the SQLite index (sqlite3's backup API, as a backup
would), then signs a token with each key-like column of the copied token row (pypitoken)
and uploads a small wheel with it (twine). Prints each column and the upload's outcome."""
import pathlib, sqlite3, subprocess, sys, tempfile, time, urllib.request

import pypitoken

binary, port = sys.argv[1], int(sys.argv[2])
venv_bin = pathlib.Path(sys.executable).parent
work = pathlib.Path(tempfile.mkdtemp())
data = work / "data"
server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("wharf serve did not become ready")
            time.sleep(0.1)
    admin = [binary, "admin", "--data-dir", data]
    subprocess.run([*admin, "user", "create", "victim"], check=True, capture_output=True)
    subprocess.run([*admin, "token", "create", "--user", "victim"], check=True, capture_output=True)

    project = work / "project"
    (project / "forged_demo").mkdir(parents=True)
    (project / "forged_demo" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "forged-demo"\nversion = "1.0"\n')
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", work / "dist",
                    project], check=True, capture_output=True)
    wheels = [str(path) for path in (work / "dist").glob("*.whl")]

    backup = sqlite3.connect(work / "backup.sqlite3")
    sqlite3.connect(data / "index.sqlite3").backup(backup)
    columns = [row[1] for row in backup.execute("PRAGMA table_info(api_tokens)")]
    for row in backup.execute("SELECT * FROM api_tokens").fetchall():
        record = dict(zip(columns, row))
        for column in ("root_key", "sealed_root_key"):
            key = record.get(column)
            if not isinstance(key, bytes):
                continue
            token = pypitoken.Token.create(domain="wharf", identifier=record["id"], key=key).dump()
            upload = subprocess.run(
                [venv_bin / "twine", "upload", "--non-interactive", "--disable-progress-bar",
                 "--repository-url", f"http://127.0.0.1:{port}/legacy/", "-u", "__token__",
                 "-p", token, *wheels], capture_output=True, text=True)
            output = upload.stdout + upload.stderr
            outcome = ("200 uploaded" if upload.returncode == 0
                       else "403 refused" if "403" in output else f"failed: {output[-300:]}")
            print(f"column {column} ({len(key)} bytes) as the root key: {outcome}")
finally:
    server.terminate()
    server.wait()
