"""The hub's read side against the stock clients: huggingface_hub and timm, via HF_ENDPOINT."""

import os
import subprocess
import sys



def _client(hub, code: str, tmp_path) -> str:
    """Run stock-client code in a fresh process (huggingface_hub reads HF_ENDPOINT at import)."""
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_hf_hub_download_model_info_and_tree(hub, tiny_weights, tmp_path):
    sha = hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    out = _client(hub, (
        "from huggingface_hub import hf_hub_download, HfApi\n"
        "p = hf_hub_download('zootest/tiny', 'model.safetensors')\n"
        "print(open(p, 'rb').read() == open(%r, 'rb').read())\n"
        "api = HfApi()\n"
        "info = api.model_info('zootest/tiny', files_metadata=True)\n"
        "print(info.sha, [(s.rfilename, s.lfs.sha256) for s in info.siblings])\n"
        "print(api.list_repo_files('zootest/tiny'))\n"
        "print(api.file_exists('zootest/tiny', 'nope.bin'), api.repo_exists('zootest/nope'))\n"
    ) % str(tiny_weights), tmp_path).splitlines()
    assert out[0] == "True"
    commit, files = out[1].split(" ", 1)
    assert len(commit) == 40 and f"('model.safetensors', '{sha}')" in files
    assert out[2] == "['model.safetensors']"
    assert out[3] == "False False"


def test_typed_errors_reach_the_client(hub, tiny_weights, tmp_path):
    hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    out = _client(hub, (
        "from huggingface_hub import hf_hub_download\n"
        "from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError\n"
        "for args, exc in [(('zootest/none', 'model.safetensors'), RepositoryNotFoundError),\n"
        "                  (('zootest/tiny', 'model.safetensors', None, None, 'v9'), RevisionNotFoundError),\n"
        "                  (('zootest/tiny', 'missing.bin'), EntryNotFoundError)]:\n"
        "    repo, fn, *rest = args\n"
        "    try:\n"
        "        hf_hub_download(repo, fn, revision=rest[-1] if rest else None)\n"
        "    except exc:\n"
        "        print('ok', exc.__name__)\n"
    ), tmp_path).split("\n")
    assert out[:3] == ["ok RepositoryNotFoundError", "ok RevisionNotFoundError", "ok EntryNotFoundError"]


def test_stock_timm_loads_pretrained_weights_from_the_hub(hub, tiny_weights, tmp_path):
    hub.publish(tiny_weights, "timm/test_efficientnet.r160_in1k", "test_efficientnet.r160_in1k")
    out = _client(hub, (
        "import timm, torch\n"
        "from safetensors.torch import load_file\n"
        "m = timm.create_model('test_efficientnet', pretrained=True)\n"
        "ref = load_file(%r)\n"
        "print(all(torch.equal(v, ref[k]) for k, v in m.state_dict().items()))\n"
    ) % str(tiny_weights), tmp_path)
    assert out.strip() == "True"


def test_range_requests_and_no_path_escape(hub, tiny_weights):
    import http.client

    import requests

    hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    url = f"{hub.url}/zootest/tiny/resolve/main/model.safetensors"
    r = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=30)
    assert r.status_code == 206 and r.content == tiny_weights.read_bytes()[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{tiny_weights.stat().st_size}"
    # a path escaping the repo is a 400 however it is spelled (the server sees the decoded path)
    for bad in ("/zootest/tiny/resolve/main/../../../../etc/passwd", "/zootest/tiny/resolve/main/%2e%2e/%2e%2e/blobs",
                "/zootest/tiny/resolve/main/sub/..%2F..%2Fpins.json", "/api/models/zootest/tiny/tree/main/..%2F..%2F"):
        conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)  # sends the path as written
        conn.request("GET", bad)
        r = conn.getresponse()
        assert r.status == 400 and b"root:" not in r.read(), (bad, r.status)
        conn.close()
