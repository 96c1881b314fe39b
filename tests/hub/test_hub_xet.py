"""Xet on ``zoo serve`` (zoo/hub/xet): stock clients (hf_xet 1.8) upload with their defaults, download
back through Xet and over plain HTTP, deduplicate against what the caller may read and nothing
else; and every malformed or lying xorb, shard or token is refused with nothing stored."""

import hashlib
import json
import os
import time

import numpy as np
import pytest
import requests

from conftest import TOKEN, HubServer, hub_client
from zoo.hub.xet import formats as fm
from zoo.hub.xet.routes import CAS_PREFIX

ALICE, BOB, READER = "alice-token", "bob-token", "reader-token"


@pytest.fixture(scope="module")
def xhub(tmp_path_factory):
    """A hub with a writer for everything (TOKEN), two users confined to their namespaces, a reader."""
    tokens = tmp_path_factory.mktemp("xtokens") / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n{ALICE} user=alice repos=alice/*\n{BOB} user=bob repos=bob/*\n"
                      f"{READER} user=reader role=read\n")
    server = HubServer(tmp_path_factory.mktemp("xserved"), "--token-file", str(tokens), "--max-upload-mb", "256")
    yield server
    server.stop()


def _auth(token):
    return {"authorization": f"Bearer {token}"} if token else {}


def _create(hub, repo, token=TOKEN, private=False):
    org, name = repo.split("/")
    r = requests.post(hub.url + "/api/repos/create", headers=_auth(token), timeout=30,
                      json={"name": name, "organization": org, "private": private})
    assert r.status_code in (200, 409), r.text


def _xet_token(hub, repo, token=TOKEN, write=True, revision="main"):
    r = requests.get(f"{hub.url}/api/models/{repo}/xet-{'write' if write else 'read'}-token/{revision}",
                     headers=_auth(token), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["accessToken"]


def _cas(hub, method, path, token, headers=None, **kwargs):
    return requests.request(method, hub.url + CAS_PREFIX + path, headers={**_auth(token), **(headers or {})},
                            timeout=60, **kwargs)


def _floats(n_bytes, seed):
    return np.random.default_rng(seed).standard_normal(n_bytes // 4).astype(np.float32).tobytes()


def _crafted(data: bytes, chunk: int = 65536, scheme: int = 2):
    """A file as a client would upload it, cut into fixed chunks: (xorb bytes, xorb hash, its FileInfo)."""
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    entries = [(fm.chunk_hash(p), len(p)) for p in pieces]
    xorb = fm.merkle_root(entries)
    seg = fm.Segment(xorb, len(data), 0, len(pieces), fm.range_hash([h for h, _ in entries]))
    info = fm.FileInfo(fm.file_hash(entries), [seg], hashlib.sha256(data).hexdigest())
    return fm.serialize_xorb(pieces, scheme), fm.hash_hex(xorb), info


def _shard(info, xorb_bytes=None):
    xorbs = []
    if xorb_bytes is not None:
        chunks, _ = fm.parse_xorb(xorb_bytes)
        x = fm.XorbInfo(info.segments[0].xorb, stored_bytes=len(xorb_bytes))
        offset = 0
        for c in chunks:
            x.chunks.append(fm.ChunkEntry(c.hash, offset, c.size))
            offset += c.size
        xorbs.append(x)
    return fm.serialize_shard([info], xorbs, footer=False)


def _stored(hub, *keys):
    return [k for k in keys if (hub.root / k).exists()]


# --- the formats, against hf_xet itself --------------------------------------------------------


def test_chunk_and_file_hashes_are_the_ones_hf_xet_computes(tmp_path):
    import hf_xet

    data = os.urandom(5000)  # under the 8 KiB minimum: one chunk
    (tmp_path / "f").write_bytes(data)
    theirs = hf_xet.hash_files([str(tmp_path / "f")])[0]
    ours = fm.hash_hex(fm.file_hash([(fm.chunk_hash(data), len(data))]))
    assert theirs.hash == ours and theirs.file_size == len(data)


def test_xorb_and_shard_formats_round_trip_and_byte_grouping_inverts():
    for n in (1, 2, 3, 4, 5, 4097):
        raw = os.urandom(n)
        assert fm.regroup4(fm.group4(raw)) == raw
    floats = _floats(300_000, 0)
    xorb, name, info = _crafted(floats)
    chunks, used = fm.parse_xorb(xorb)
    assert used == len(xorb) and fm.hash_hex(fm.merkle_root([(c.hash, c.size) for c in chunks])) == name
    assert b"".join(fm.decode_chunks(xorb, len(chunks))) == floats
    assert len(xorb) < len(floats)  # byte grouping lets LZ4 shrink float noise a little
    parsed = fm.parse_shard(_shard(info, xorb))
    assert parsed.files[0].hash == info.hash and parsed.files[0].sha256 == info.sha256
    assert parsed.files[0].segments[0].verification == info.segments[0].verification
    assert [c.hash for c in parsed.xorbs[0].chunks] == [c.hash for c in chunks]


# --- stock clients ------------------------------------------------------------------------------


@pytest.mark.slow  # ~12 s: four uploads, timm's model, three downloads
def test_stock_uploads_go_through_xet_and_download_back_through_xet_and_plain_http(xhub, tmp_path):
    """upload_file, upload_folder, `hf upload` and timm's push_to_hf_hub, no environment variable set;
    then the same bytes back through hf_xet and, without it, over plain HTTP."""
    _create(xhub, "acme/stock")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(_floats(12_000_000, 1))  # floats: byte-grouped chunks
    (folder / "noise.bin").write_bytes(os.urandom(11 * 1024 * 1024))  # incompressible: stored chunks
    (tmp_path / "single.bin").write_bytes(_floats(11_000_000, 2))
    (tmp_path / "cli.bin").write_bytes(_floats(10_600_000, 3))
    want = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in [*folder.iterdir(), tmp_path / "single.bin", tmp_path / "cli.bin"]}
    before = xhub.stats_full()["xet_bytes_in"]
    env = {"HF_TOKEN": TOKEN, "HF_XET_CACHE": str(tmp_path / "xet-up")}
    hub_client(xhub, f"""
import json, os, subprocess, sys, timm
from huggingface_hub import HfApi
api = HfApi()
api.upload_folder(folder_path={str(folder)!r}, repo_id="acme/stock")
api.upload_file(path_or_fileobj={str(tmp_path / "single.bin")!r}, path_in_repo="single.bin", repo_id="acme/stock")
r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "hf"), "upload", "acme/stock", {str(tmp_path / "cli.bin")!r},
                    "cli.bin"], capture_output=True, text=True)
assert r.returncode == 0, r.stderr
model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10)
timm.models.push_to_hf_hub(model, "acme/timm-pushed")
print(json.dumps(1))
""", tmp_path, **env)
    received = xhub.stats_full()["xet_bytes_in"] - before
    assert received > 40_000_000  # the four large files (and timm's 18 MB) came as xorbs, not as LFS
    log = xhub.log_text()
    assert "POST /api/zoo/cas/v1/shards 200" in log and "/info/lfs/objects/batch" not in log
    code = """
import hashlib, json, os
from huggingface_hub import snapshot_download
snap = snapshot_download("acme/stock")
print(json.dumps({f: hashlib.sha256(open(os.path.join(snap, f), "rb").read()).hexdigest()
                  for f in os.listdir(snap) if not f.startswith(".")}))
"""
    fetched_before = log.count("GET /api/zoo/cas/fetch/")
    assert hub_client(xhub, code, tmp_path / "via-xet", HF_XET_CACHE=str(tmp_path / "xet-down")) == want
    assert xhub.log_text().count("GET /api/zoo/cas/fetch/") > fetched_before  # the bytes came as xorbs
    assert hub_client(xhub, code, tmp_path / "via-http", HF_HUB_DISABLE_XET="1") == want
    timm_files = hub_client(xhub, """
import json, safetensors.torch, timm
m = timm.create_model("hf-hub:acme/timm-pushed", pretrained=True)
print(json.dumps(sum(p.numel() for p in m.parameters())))
""", tmp_path / "timm", HF_XET_CACHE=str(tmp_path / "xet-timm"))
    assert timm_files > 3_000_000
    # a download offers Xet only for files whose reconstruction the server holds
    r = requests.head(f"{xhub.url}/acme/stock/resolve/main/single.bin", timeout=10)
    assert len(r.headers["X-Xet-Hash"]) == 64 and 'rel="xet-auth"' in r.headers["Link"]


def test_a_file_sharing_most_bytes_with_a_readable_one_sends_only_the_rest(xhub, tmp_path):
    """Dedupe across repos through the server alone (a fresh client cache each time), from what the
    caller may read (public repos, and private ones of its token); another user's identical upload is
    not deduplicated against a private repo (nor told of it)."""
    _create(xhub, "alice/base", ALICE, private=True)
    _create(xhub, "alice/tuned", ALICE, private=True)
    _create(xhub, "bob/copy", BOB)
    base = _floats(24_000_000, 4)
    tuned = bytearray(base)
    tuned[12_000_000:13_200_000] = _floats(1_200_000, 5)  # 5% new, in one place, as a retrained block
    (tmp_path / "base.bin").write_bytes(base)
    (tmp_path / "tuned.bin").write_bytes(bytes(tuned))
    got = []
    for n, (token, repo, path) in enumerate([(ALICE, "alice/base", "base.bin"), (ALICE, "alice/tuned", "tuned.bin"),
                                             (BOB, "bob/copy", "tuned.bin")]):
        before = xhub.stats_full()["xet_bytes_in"]
        hub_client(xhub, f"""
import json
from huggingface_hub import HfApi
HfApi(token={token!r}).upload_file(path_or_fileobj={str(tmp_path / path)!r}, path_in_repo="m.bin", repo_id={repo!r})
print(json.dumps(1))
""", tmp_path / f"c{n}", HF_XET_CACHE=str(tmp_path / f"xet{n}"))
        got.append((xhub.stats_full()["xet_bytes_in"] - before) / len(base))
    assert got[0] > 0.9
    assert got[1] < 0.10  # 5% new: the rest was found through the dedupe query
    assert got[2] > 0.9  # bob may not read alice's private repos: nothing of theirs is offered to him
    for repo in ("alice/tuned", "bob/copy"):
        r = requests.get(f"{xhub.url}/{repo}/resolve/main/m.bin", headers=_auth(TOKEN), timeout=30)
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(tuned).digest()


# --- tokens -------------------------------------------------------------------------------------


def test_tokens_are_scoped_to_one_repo_and_a_caller_who_may(xhub):
    _create(xhub, "alice/scoped", ALICE)
    assert requests.get(f"{xhub.url}/api/models/alice/scoped/xet-write-token/main", headers=_auth(BOB),
                        timeout=10).status_code in (403, 404)
    assert requests.get(f"{xhub.url}/api/models/alice/scoped/xet-write-token/main", headers=_auth(READER),
                        timeout=10).status_code == 403
    r = requests.get(f"{xhub.url}/api/models/alice/scoped/xet-write-token/main", headers=_auth(ALICE), timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["casUrl"] == xhub.url + CAS_PREFIX and body["exp"] > time.time()
    assert r.headers["X-Xet-Access-Token"] == body["accessToken"]
    xorb, name, _ = _crafted(_floats(100_000, 6))
    read = _xet_token(xhub, "alice/scoped", ALICE, write=False)
    # a gated repo's read token needs a token that may read it, as its files do
    assert requests.put(f"{xhub.url}/api/models/alice/scoped/settings", headers=_auth(ALICE), json={"gated": "auto"},
                        timeout=10).status_code == 200
    assert requests.get(f"{xhub.url}/api/models/alice/scoped/xet-read-token/main", timeout=10).status_code == 401
    import base64
    import hmac

    secret = (xhub.root / "hub-secret").read_bytes().strip()  # what only the server knows: a token it signed, expired
    payload = base64.urlsafe_b64encode(json.dumps({"s": "model:alice/scoped", "r": "main", "w": True, "c": "",
                                                   "exp": int(time.time()) - 1}).encode()).rstrip(b"=").decode()
    expired = f"{payload}.{hmac.new(secret, f'xet-token:{payload}'.encode(), hashlib.sha256).hexdigest()}"
    assert "expired" in _cas(xhub, "POST", f"/v1/xorbs/default/{name}", expired, data=xorb).json()["error"]
    for token in (None, "forged." + "0" * 64, body["accessToken"][:-2] + "00", read, expired):
        r = _cas(xhub, "POST", f"/v1/xorbs/default/{name}", token, data=xorb)
        assert r.status_code == 401 and r.json()["error"]
    assert not _stored(xhub, f"xet/xorbs/{name}")
    # routes this server does not implement: 404 before any check, so hf_xet falls back to v1
    for method, path in (("POST", f"/v1/xorb-grants/default/{name}"), ("POST", "/v2/shards"),
                         ("GET", f"/v2/reconstructions/{name}"), ("POST", "/v1/telemetry")):
        assert _cas(xhub, method, path, None).status_code == 404


def test_a_read_token_reconstructs_only_files_of_its_repo_at_its_revision(xhub, tmp_path):
    _create(xhub, "alice/private", ALICE, private=True)
    _create(xhub, "alice/public", ALICE)
    data = _floats(200_000, 7)
    xorb, name, info = _crafted(data)
    write = _xet_token(xhub, "alice/private", ALICE)
    assert _cas(xhub, "POST", f"/v1/xorbs/default/{name}", write, data=xorb).json() == {"was_inserted": True}
    assert _cas(xhub, "POST", "/v1/shards", write, data=_shard(info, xorb)).status_code == 200
    commit = requests.post(f"{xhub.url}/api/models/alice/private/commit/main", headers=_auth(ALICE), timeout=30, data=(
        json.dumps({"key": "header", "value": {"summary": "crafted"}}) + "\n" +
        json.dumps({"key": "lfsFile", "value": {"path": "f.bin", "algo": "sha256", "oid": info.sha256,
                                                "size": len(data)}}) + "\n"))
    assert commit.status_code == 200, commit.text
    file_id = fm.hash_hex(info.hash)
    ok = _cas(xhub, "GET", f"/v1/reconstructions/{file_id}", _xet_token(xhub, "alice/private", ALICE, write=False),
              headers={"range": "bytes=70000-"})
    body = ok.json()
    assert ok.status_code == 200 and body["terms"][0]["range"]["start"] == 1
    assert body["offset_into_first_range"] == 70000 - 65536
    fetch = body["fetch_info"][name][0]
    r = requests.get(fetch["url"], headers={"range": f"bytes={fetch['url_range']['start']}-{fetch['url_range']['end']}"},
                     timeout=10)
    assert r.status_code == 206 and b"".join(fm.decode_chunks(r.content, 3))[body["offset_into_first_range"]:] == data[70000:]
    assert requests.get(fetch["url"].replace("sig=", "sig=1"), timeout=10).status_code == 403
    # the URL fetches the chunks of this file's range, not the rest of the xorb (it may hold other files)
    assert requests.get(fetch["url"], headers={"range": "bytes=0-"}, timeout=10).status_code == 416
    # a token of another repo (public, readable by all) does not reach this file
    other = _xet_token(xhub, "alice/public", None, write=False)
    assert _cas(xhub, "GET", f"/v1/reconstructions/{file_id}", other).status_code == 404
    # nor does anyone without a token that may read the private repo get one, or the Xet hash
    assert requests.get(f"{xhub.url}/api/models/alice/private/xet-read-token/main", timeout=10).status_code == 404
    assert "X-Xet-Hash" not in requests.head(f"{xhub.url}/alice/private/resolve/main/f.bin", timeout=10).headers


# --- bad input ----------------------------------------------------------------------------------


def test_lying_or_malformed_xorbs_are_refused_and_nothing_is_stored(xhub):
    _create(xhub, "acme/bad")
    token = _xet_token(xhub, "acme/bad")
    xorb, name, _ = _crafted(_floats(300_000, 8))
    other = _crafted(_floats(300_000, 9))[1]
    bad_lz4 = bytearray(xorb)
    bad_lz4[8:12] = b"\0\0\0\0"  # the first chunk's LZ4 frame magic
    import lz4.frame

    raw = os.urandom(1000) * 8
    frame = lz4.frame.compress(raw) + b"JUNK"  # a frame hf_xet's decoder would read on past, and fail
    trailing = bytes([0]) + len(frame).to_bytes(3, "little") + bytes([1]) + len(raw).to_bytes(3, "little") + frame
    trailing_name = fm.hash_hex(fm.merkle_root([(fm.chunk_hash(raw), len(raw))]))
    zeros = fm.serialize_xorb([bytes(fm.MAX_CHUNK)] * 600)  # 3 MB sent, 75 MiB to decompress
    zeros_name = fm.hash_hex(fm.merkle_root([(fm.chunk_hash(bytes(fm.MAX_CHUNK)), fm.MAX_CHUNK)] * 600))
    cases = {
        "hash to": (other, xorb),  # honest bytes under another xorb's name
        "truncated": (name, xorb[:-100]),
        "LZ4": (name, bytes(bad_lz4)),
        "version": (name, b"\x07" + xorb[1:]),
        "no chunks": (name, b""),
        "after the LZ4 frame": (trailing_name, trailing),
        "uncompressed": (zeros_name, zeros),
    }
    for why, (url_hash, body) in cases.items():
        r = _cas(xhub, "POST", f"/v1/xorbs/default/{url_hash}", token, data=body)
        assert r.status_code == 400 and why in r.json()["error"], (why, r.text)
    assert _cas(xhub, "POST", "/v1/xorbs/default/nothex", token, data=xorb).status_code == 400
    big = _cas(xhub, "POST", f"/v1/xorbs/default/{name}", token, data=b"\0" * (fm.MAX_XORB_BYTES + (2 << 20)))
    assert big.status_code == 413
    assert not list((xhub.root / "xet").rglob("xorbs/*")) or not _stored(xhub, f"xet/xorbs/{name}", f"xet/xorbs/{other}")
    assert requests.get(xhub.url + "/api/zoo/stats", timeout=10).status_code == 200  # still up


def test_shards_that_lie_about_their_files_are_refused_and_nothing_is_committed(xhub):
    _create(xhub, "acme/lies")
    _create(xhub, "alice/secret", ALICE, private=True)
    _create(xhub, "bob/lies", BOB)
    token = _xet_token(xhub, "acme/lies")
    data = _floats(400_000, 10)
    xorb, name, info = _crafted(data)
    assert _cas(xhub, "POST", f"/v1/xorbs/default/{name}", token, data=xorb).status_code == 200
    # alice's private xorb: bob may not read it, so a shard of his naming it is refused
    secret, secret_name, secret_info = _crafted(_floats(200_000, 11))
    assert _cas(xhub, "POST", f"/v1/xorbs/default/{secret_name}", _xet_token(xhub, "alice/secret", ALICE),
                data=secret).status_code == 200

    def variant(**changes):
        f = fm.FileInfo(info.hash, [fm.Segment(**{**info.segments[0].__dict__})], info.sha256)
        for key, value in changes.items():
            setattr(f.segments[0] if hasattr(f.segments[0], key) else f, key, value)
        return _shard(f)

    unknown = _crafted(_floats(50_000, 12))[2]
    cases = {
        "sha256": variant(sha256=hashlib.sha256(b"other").hexdigest()),
        "hash to": variant(hash=fm.chunk_hash(b"x")),
        "verification": variant(verification=fm.chunk_hash(b"y")),
        "has 7": variant(end=info.segments[0].end + 1),
        "does not hold": _shard(unknown),
        "not a Xet shard": b"garbage" * 10,
        "truncated": _shard(info)[:-20],
    }
    secret_shard = _shard(secret_info)
    for why, body in cases.items():
        r = _cas(xhub, "POST", "/v1/shards", token, data=body)
        assert r.status_code == 400 and why in r.json()["error"], (why, r.text)
    bob = _xet_token(xhub, "bob/lies", BOB)
    r = _cas(xhub, "POST", "/v1/shards", bob, data=secret_shard)
    assert r.status_code == 400 and "does not hold" in r.json()["error"]  # bob may not read alice/secret
    # acme/lies is public: bob may use its xorb, but only ranges whose chunks he proves he knows
    r = _cas(xhub, "POST", "/v1/shards", bob, data=variant(verification=None))
    assert r.status_code == 400 and "verification entry" in r.json()["error"]
    assert not _stored(xhub, f"blobs/{info.sha256}", f"blobs/{secret_info.sha256}")
    # a commit may not name what no accepted shard (or LFS upload) produced
    commit = requests.post(f"{xhub.url}/api/models/acme/lies/commit/main", headers=_auth(TOKEN), timeout=30, data=(
        json.dumps({"key": "header", "value": {"summary": "x"}}) + "\n" +
        json.dumps({"key": "lfsFile", "value": {"path": "f.bin", "algo": "sha256", "oid": info.sha256,
                                                "size": len(data)}}) + "\n"))
    assert commit.status_code in (400, 404, 422) and info.sha256 in commit.text
    # the honest shard is accepted, and then the commit is
    assert _cas(xhub, "POST", "/v1/shards", token, data=_shard(info, xorb)).status_code == 200
    assert _stored(xhub, f"blobs/{info.sha256}")
    assert _cas(xhub, "POST", "/v1/shards", bob, data=_shard(info)).status_code == 200  # verified: he has the bytes
