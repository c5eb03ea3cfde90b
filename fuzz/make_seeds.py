"""Regenerates fuzz/seeds/<target>/ from real distributions and real client encodings.

Run with the test venv's Python (it has twine's urllib3 for multipart encoding):
    tests/.venv/bin/python fuzz/make_seeds.py
Inputs: the small wheels CPython ships as test data, the METADATA of the packages installed
in tests/.venv, and the macaroons and JWTs of the Rust test fixtures. Files over 100 KB are
skipped. The output is committed; `make fuzz` copies it into the working corpus.
"""

import base64
import glob
import json
import hashlib
import io
import os
import re
import sys
import tarfile
import zipfile

from urllib3 import encode_multipart_formdata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
MAX_SEED = 100 * 1024


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_SEED:
        return
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(folder, name), "wb") as out:
        out.write(data)


def real_wheels():
    patterns = [
        "/root/.pyenv/versions/*/lib/python3*/test/test_importlib/*/data/*.whl",
        "/root/.pyenv/versions/*/lib/python3*/test/test_importlib/data/*.whl",
        "/root/.pyenv/versions/*/lib/python3*/test/wheeldata/*.whl",
        "/usr/lib/python3*/test/**/*.whl",
    ]
    seen = {}
    for pattern in patterns:
        for path in glob.glob(pattern, recursive=True):
            base = os.path.basename(path)
            if base not in seen and os.path.getsize(path) <= MAX_SEED:
                seen[base] = path
    return sorted(seen.values())


def sdist_of(wheel_path):
    """A real sdist layout (PKG-INFO at the top) from the wheel's files."""
    with zipfile.ZipFile(wheel_path) as wheel:
        metadata_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        top = metadata_name.split(".dist-info/")[0]
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            for name in wheel.namelist():
                data = wheel.read(metadata_name if name == metadata_name else name)
                member = "PKG-INFO" if name == metadata_name else name
                info = tarfile.TarInfo(f"{top}/{member}")
                info.size = len(data)
                info.mtime = 1_700_000_000
                tar.addfile(info, io.BytesIO(data))
        return f"{top}.tar.gz", buffer.getvalue()


def main():
    wheels = real_wheels()
    if not wheels:
        sys.exit("no test wheels found")
    for path in wheels:
        data = open(path, "rb").read()
        base = os.path.basename(path)
        put("wheel", data)
        put("filename", base)
        sdist_name, sdist = sdist_of(path)
        put("sdist", sdist)
        put("filename", sdist_name)
        with zipfile.ZipFile(path) as wheel:
            metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
            meta_bytes = wheel.read(metadata)
        put("metadata", meta_bytes)
        name, version = base.split("-")[:2]
        put("name_version", name)
        put("name_version", version)
        fields = [
            (":action", "file_upload"),
            ("protocol_version", "1"),
            ("metadata_version", "2.1"),
            ("name", name),
            ("version", version),
            ("filetype", "bdist_wheel"),
            ("pyversion", "py3"),
            ("sha256_digest", hashlib.sha256(data).hexdigest()),
            ("blake2_256_digest", hashlib.blake2b(data, digest_size=32).hexdigest()),
            ("summary", "A real wheel"),
            ("classifiers", "Programming Language :: Python :: 3"),
            ("classifiers", "License :: OSI Approved :: MIT License"),
        ]
        put("upload_form", "\n".join(f"{k}={v}" for k, v in fields))
        # The multipart body the way twine's urllib3 encodes it (file last).
        body, content_type = encode_multipart_formdata(
            fields + [("content", (base, data[:2048], "application/octet-stream"))]
        )
        put("multipart", bytes([7]) + content_type.encode() + b"\n" + body)

    for dist_info in sorted(glob.glob(os.path.join(ROOT, "tests/.venv/lib/python3*/site-packages/*.dist-info")))[:40]:
        metadata = os.path.join(dist_info, "METADATA")
        if os.path.exists(metadata):
            put("metadata", open(metadata, "rb").read())
        base = os.path.basename(dist_info)[: -len(".dist-info")]
        name, _, version = base.partition("-")
        put("name_version", name)
        put("name_version", version)
        put("filename", f"{base}-py3-none-any.whl")

    sources = glob.glob(os.path.join(ROOT, "crates/**/*.rs"), recursive=True) + glob.glob(
        os.path.join(ROOT, "tests/**/*.rs"), recursive=True
    )
    for source in sources:
        text = open(source, encoding="utf-8", errors="replace").read()
        for token in set(re.findall(r"pypi-Ag[A-Za-z0-9_-]{40,}", text)):
            put("macaroon", token)
        for jwt in set(re.findall(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", text)):
            put("jwt", jwt)
    vectors = json.load(open(os.path.join(ROOT, "crates/wharf-macaroon/tests/fixtures/vectors.json")))
    for macaroon in vectors["macaroons"]:
        raw = bytes.fromhex(macaroon["raw_hex"])
        put("macaroon", raw)
        put("macaroon", "pypi-" + base64.urlsafe_b64encode(raw).decode().rstrip("="))
        for caveat in macaroon.get("caveats_hex", []):
            put("macaroon", bytes.fromhex(caveat))
    for malformed in vectors["malformed"]:
        put("macaroon", "pypi-" + malformed["body"])

    # JWTs shaped like the CI providers' (spec b): real claim sets, dummy signatures.
    def b64(value):
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claim_sets = [
        {"iss": "https://token.actions.githubusercontent.com", "aud": "pypi", "sub": "repo:octo/demo:environment:release",
         "repository": "octo/demo", "repository_owner": "octo", "repository_owner_id": "1", "job_workflow_ref": "octo/demo/.github/workflows/release.yml@refs/tags/v1",
         "workflow_ref": "octo/demo/.github/workflows/release.yml@refs/tags/v1", "ref": "refs/tags/v1", "environment": "release",
         "jti": "6f8a", "iat": 1700000000, "nbf": 1700000000, "exp": 1700000900},
        {"iss": "https://gitlab.com", "aud": "pypi", "sub": "project_path:ns/proj:ref_type:tag:ref:v1", "project_path": "ns/proj",
         "ci_config_ref_uri": "gitlab.com/ns/proj//.gitlab-ci.yml@refs/tags/v1", "namespace_path": "ns", "environment": "prod",
         "iat": 1700000000, "exp": 1700000900},
        {"iss": "https://accounts.google.com", "aud": "pypi", "sub": "111", "email": "ci@example.iam.gserviceaccount.com", "email_verified": True,
         "iat": 1700000000, "exp": 1700000900},
        {"iss": "https://platform.activestate.com/api/v1/oauth/oidc", "aud": "pypi", "sub": "org:o:project:p", "organization": "o",
         "project": "p", "actor_id": "a", "builder": "pypi-publisher", "iat": 1700000000, "exp": 1700000900},
    ]
    for claims in claim_sets:
        for header in ({"alg": "RS256", "kid": "key-1", "typ": "JWT"}, {"alg": "none"}):
            put("jwt", f"{b64(header)}.{b64(claims)}.c2lnbmF0dXJl")

    for target in ("filename", "name_version", "metadata", "upload_form", "multipart", "macaroon", "jwt", "wheel", "sdist"):
        count = len(os.listdir(os.path.join(SEEDS, target))) if os.path.isdir(os.path.join(SEEDS, target)) else 0
        print(f"{target}: {count} seeds")


main()
