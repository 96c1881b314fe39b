"""The pages a person browses (zoo/hub/pages.py), over a live ``zoo serve`` holding the bundled
lite0 weights, a head fine-tuned on them and published with ``zoo publish``, a timm-style model, a
dataset, a private repo and a README written to attack its readers; on the local store and on S3.

The browser tests drive Debian's headless Chromium with Playwright (``executable_path``: Playwright's
own browser download needs the internet); ``tools/test.sh`` installs it, and where it is missing
or refuses to start they skip, saying why. Screenshots land in the test's temp dir (``screenshots``).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

import zoo
from conftest import HubServer, hub_client

TOKEN, READER = "pages-token", "pages-reader"
LITE0_REPO = "timm/tf_efficientnet_lite0.in1k"
HEAD_REPO = "acme/lite0-digits"

#: a README that tries every way into its reader's browser; {beacon} is another origin that counts hits
HOSTILE = """---
license: mit
library_name: zoo
---
# A hostile card

<script>window.__pwned = "script"</script>
<img src="x" onerror="window.__pwned = 'onerror'">
<svg onload="window.__pwned = 'svg'"></svg>
<iframe src="javascript:window.__pwned = 'iframe'"></iframe>
<a href="#" onclick="window.__pwned = 'onclick'">click</a>
<style>body {{ display: none }}</style>
<form action="{beacon}/form"><button>go</button></form>

[a javascript link](javascript:window.__pwned='link')
[a data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)
![a beacon]({beacon}/beacon.png)
![a relative image](logo.png)

| a | table |
| - | ----- |
| <b onmouseover="window.__pwned='cell'">x</b> | `<script>in code</script>` |
"""

TIMM_README = """---
license: apache-2.0
library_name: timm
tags: [image-classification, tiny]
---
# tiny timm model

Weights for a tiny model: see [the config](config.json).
"""

DATASET_README = """---
license: cc-by-4.0
pretty_name: Handwritten digits
---
# Digits

The sklearn digits as a CSV.
"""


def _png() -> bytes:
    from PIL import Image
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(data.chelsea()).resize((120, 80)).save(out, format="PNG")
    return out.getvalue()


class Beacon:
    """An HTTP server on another loopback port: what it counts, a page made its reader send elsewhere."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def beacon():
    b = Beacon()
    yield b
    b.stop()


@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def site(request, tmp_path_factory, small_run, small_home, beacon):
    """A hub with something of everything on it (see the module docstring)."""
    root = tmp_path_factory.mktemp("pages")
    tokens = root.parent / f"{root.name}-tokens.txt"
    tokens.write_text(f"{TOKEN}\n{READER} user=reader role=read\n")
    extra, env = [], None
    if request.param == "s3":
        seaweed = request.getfixturevalue("seaweed")
        extra, env = ["--storage", f"s3://{seaweed.bucket()}/pages-{uuid.uuid4().hex[:8]}"], seaweed.env
    server = HubServer(root, "--token-file", str(tokens), *extra, env=env)
    server.storage, server.storage_env = (extra[1] if extra else None), env or {}
    try:
        lite0 = zoo.card("efficientnet_lite0")
        server.publish(small_home / "blobs" / lite0.sha256, LITE0_REPO, lite0.name)
        from zoo.transfer.publish import publish

        publish(small_run[0], HEAD_REPO, endpoint=server.url, token=TOKEN)  # what `zoo publish` does
        files = root.parent / f"{root.name}-files"
        (files / "tiny").mkdir(parents=True)
        from safetensors.numpy import save_file
        import numpy as np

        save_file({"conv.weight": np.zeros((8, 3, 3, 3), np.float32), "fc.weight": np.zeros((5, 8), np.float16)},
                  str(files / "tiny" / "model.safetensors"))
        (files / "tiny" / "config.json").write_text(json.dumps({"architecture": "resnet18", "num_classes": 5}))
        (files / "tiny" / "README.md").write_text(TIMM_README)
        (files / "hostile").mkdir()
        (files / "hostile" / "README.md").write_text(HOSTILE.format(beacon=beacon.url))
        (files / "hostile" / "logo.png").write_bytes(_png())
        (files / "ds").mkdir()
        (files / "ds" / "README.md").write_text(DATASET_README)
        (files / "ds" / "digits.csv").write_text("label,pixels\n0,0 0 5 13\n")
        from huggingface_hub import HfApi, constants

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(constants, "HF_HUB_DISABLE_XET", True)  # a zoo hub speaks LFS (issue: Xet)
            api = HfApi(endpoint=server.url, token=TOKEN)
            for repo, folder, kind in (("acme/tiny-timm", "tiny", "model"), ("acme/hostile", "hostile", "model"),
                                       ("acme/digits", "ds", "dataset"), ("acme/secret", "tiny", "model")):
                api.create_repo(repo, repo_type=kind, private=repo == "acme/secret")
                api.upload_folder(folder_path=files / folder, repo_id=repo, repo_type=kind)
            api.create_branch("acme/tiny-timm", branch="dev")
            dev = api.upload_file(path_or_fileobj=b"dev notes", path_in_repo="NOTES.txt", repo_id="acme/tiny-timm",
                                  revision="dev").oid
            api.create_tag("acme/tiny-timm", tag="v1")
            pr = api.upload_file(path_or_fileobj=b"a proposal", path_in_repo="PROPOSAL.txt", repo_id="acme/tiny-timm",
                                 create_pr=True, commit_message="Propose a change").pr_num
        server.made = {"dev": dev, "pr": pr}
        yield server
    finally:
        server.stop()


def get(site, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return requests.get(site.url + path, headers=headers, timeout=30, **kwargs)


def rows(html: str) -> list[str]:
    """The repo ids the index lists, in order."""
    return re.findall(r'<a class="repo" href="[^"]*">([^<]+)</a>', html)


# ---- without a browser: what the server answers -----------------------------------------------

def test_the_index_lists_every_kind_of_repo_with_its_figures(site):
    r = get(site, "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"] and r.headers["x-content-type-options"] == "nosniff"
    listed = rows(r.text)
    assert sorted(listed) == sorted(["acme/digits", "acme/hostile", HEAD_REPO, "acme/tiny-timm", LITE0_REPO])
    assert "74.85" in r.text  # lite0's published top-1, from its card
    assert 'href="/datasets/acme/digits"' in r.text and 'href="/timm/tf_efficientnet_lite0.in1k"' in r.text
    # the private repo only for a token that may read it, on the index and on its page
    assert "acme/secret" in rows(get(site, "/", token=READER).text)
    assert get(site, "/acme/secret").status_code == 404 and get(site, "/acme/secret", token=READER).status_code == 200
    # search, filters and sort work without JavaScript (a GET form)
    assert rows(get(site, "/?q=DIGITS").text) == ["acme/digits", HEAD_REPO]
    assert rows(get(site, "/?kind=dataset").text) == ["acme/digits"]
    assert rows(get(site, "/?license=mit").text) == ["acme/hostile"]
    assert rows(get(site, "/?license=apache-2.0").text) == [HEAD_REPO, "acme/tiny-timm", LITE0_REPO]  # a head: its base's
    assert rows(get(site, "/?library=timm").text) == ["acme/tiny-timm", LITE0_REPO]
    by_params = rows(get(site, "/?sort=params&order=desc").text)
    assert by_params[:3] == [LITE0_REPO, HEAD_REPO, "acme/tiny-timm"]  # 4.65 M, 12,810, 256; the rest have none
    assert rows(get(site, "/?sort=params&order=asc").text)[:3] == ["acme/tiny-timm", HEAD_REPO, LITE0_REPO]
    assert rows(get(site, "/?sort=name&order=desc").text) == sorted(listed, key=str.casefold, reverse=True)


def test_a_repo_page_has_figures_files_usage_refs_and_lineage(site):
    head = get(site, f"/{HEAD_REPO}").text
    assert f'href="/{LITE0_REPO}"' in head  # its base, by the README's base_model
    assert f'zoo.load(&#34;hf://{HEAD_REPO}&#34;)' in head and f"HF_ENDPOINT={site.url}" in head
    base = get(site, f"/{LITE0_REPO}").text
    assert f'href="/{HEAD_REPO}"' in base and "Fine-tuned on this model" in base  # and back
    assert "74.85 %" in base and "92.18 %" in base and "results-imagenet.csv" in base  # figures with their source
    assert zoo.card("efficientnet_lite0").sha256 in base and "224x224, bicubic" in base
    tiny = get(site, "/acme/tiny-timm").text
    assert "timm.create_model(&#34;hf-hub:acme/tiny-timm&#34;, pretrained=True)" in tiny
    assert "counted from the safetensors headers" in tiny and "F16 40, F32 216" in tiny
    assert ">dev</a>" in tiny and ">v1</a>" in tiny and "PROPOSAL.txt" not in tiny  # the PR's file is not on main
    assert f"#{site.made['pr']} Propose a change</a> (open, by zoo, into main)" in tiny
    # at a branch, and at the pull request's ref (its slashes encoded, as links carry them)
    dev = get(site, "/acme/tiny-timm/tree/dev").text
    assert site.made["dev"] in dev and "NOTES.txt" in dev
    pr = get(site, f"/acme/tiny-timm/tree/refs%2Fpr%2F{site.made['pr']}").text
    assert "PROPOSAL.txt" in pr
    ds = get(site, "/datasets/acme/digits")
    assert ds.status_code == 200 and "digits.csv" in ds.text and "--repo-type dataset" in ds.text
    assert "The sklearn digits as a CSV." in ds.text and "pretty_name" not in ds.text.split('id="readme"')[1]


def test_a_card_page_shows_what_zoo_compare_measured_on_the_server(site, monkeypatch):
    from zoo.compare.measurements import save_measurement

    monkeypatch.setenv("ZOO_HOME", str(site.root))  # the server's home: where its `zoo compare` writes
    lite0 = zoo.card("efficientnet_lite0")
    save_measurement(lite0.name, {"latency_ms": 12.34, "throughput": 81.5, "throughput_batch": 32, "peak_rss_mb": 412,
                                  "gmacs": 0.39, "machine": {"cpu": "Test CPU 9000", "threads": 2, "torch": "2.14.1"}})
    page = get(site, f"/{LITE0_REPO}").text
    assert "12.3 ms" in page and "81.5 img/s" in page and "throughput, batch 32" in page
    assert "measured: zoo compare on Test CPU 9000, 2 threads, torch 2.14.1" in page


def test_heads_published_later_reach_the_base_page_through_a_background_rescan(site, monkeypatch):
    from huggingface_hub import HfApi, constants

    from zoo.hub import catalog

    served = _second_server(site, monkeypatch)
    assert [s.repo_id for s in catalog.heads_of(served, LITE0_REPO, None)] == [HEAD_REPO]
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    api = HfApi(endpoint=site.url, token=TOKEN)
    for repo, private in (("acme/second-head", False), ("acme/private-head", True)):
        api.create_repo(repo, private=private)
        api.upload_file(path_or_fileobj=f"---\nbase_model: {LITE0_REPO}\n---\n# {repo}\n".encode(),
                        path_in_repo="README.md", repo_id=repo)
    assert [s.repo_id for s in catalog.heads_of(served, LITE0_REPO, None)] == [HEAD_REPO]  # the map is recent
    monkeypatch.setattr(catalog, "LINEAGE_SECONDS", 0.0)
    catalog.heads_of(served, LITE0_REPO, None)  # stale now: this answer is the old map, a rescan starts
    deadline = time.time() + 60
    while served.lineage_refreshing and time.time() < deadline:
        time.sleep(0.05)
    monkeypatch.setattr(catalog, "LINEAGE_SECONDS", 3600.0)
    assert [s.repo_id for s in catalog.heads_of(served, LITE0_REPO, None)] == [HEAD_REPO, "acme/second-head"]
    from zoo.hub.auth import Identity

    reader = Identity(READER, "reader", "read")
    assert "acme/private-head" in [s.repo_id for s in catalog.heads_of(served, LITE0_REPO, reader)]
    for repo in ("acme/second-head", "acme/private-head"):
        api.delete_repo(repo)


def test_hostile_uploads_cost_their_own_figures_never_a_page(site, monkeypatch):
    """A safetensors header nested past Python's recursion limit, a model-index of the wrong
    types, a README too large to render, a head made private: every page still answers, and
    says no more than it may."""
    import struct

    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    api = HfApi(endpoint=site.url, token=TOKEN)
    deep = b"[" * 200_000 + b"]" * 200_000
    odd = f"---\nbase_model: {LITE0_REPO}\nlicense: [mit, bsd-3-clause]\nmodel-index: [{{name: odd, results: [{{metrics: 7}}, 5]}}]\n---\n# odd\n"
    api.create_repo("acme/odd")
    api.upload_file(path_or_fileobj=struct.pack("<Q", len(deep)) + deep, path_in_repo="model.safetensors", repo_id="acme/odd")
    api.upload_file(path_or_fileobj=odd.encode(), path_in_repo="README.md", repo_id="acme/odd")
    api.create_repo("acme/huge")
    api.upload_file(path_or_fileobj=b"# big\n" + b"[" * 200_000, path_in_repo="README.md", repo_id="acme/huge")
    api.upload_file(path_or_fileobj=b"print('x')", path_in_repo="js/evil.js", repo_id="acme/huge")
    try:
        for path in ("/", "/acme/odd", f"/{LITE0_REPO}", "/acme/huge", "/api/models/acme/odd"):
            assert get(site, path).status_code == 200, path
        assert rows(get(site, "/?license=bsd-3-clause").text) == ["acme/odd"]  # one of its licences
        huge = get(site, "/acme/huge").text
        assert "over the 131.1 kB a page renders" in huge
        assert "evil.js" in get(site, "/acme/huge/tree/main/js").text
        files = get(site, "/acme/huge/tree/main/js").text.split('id="files"')[1].split("</section>")[0]
        assert "js/evil.js" in files and "README.md" not in files
        assert get(site, "/acme/huge/tree/main/nope").status_code == 404
        r = get(site, "/acme/huge/resolve/main/js/evil.js")
        assert r.headers["x-content-type-options"] == "nosniff"  # never a script the pages' CSP would run
    finally:
        for repo in ("acme/odd", "acme/huge"):
            api.delete_repo(repo)


def test_a_head_made_private_leaves_its_base_page_at_once(site, monkeypatch):
    """The map of heads is minutes old at worst; who may see a head is read when the page is."""
    from huggingface_hub import HfApi, constants

    from zoo.hub import catalog
    from zoo.hub.auth import Identity

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    api = HfApi(endpoint=site.url, token=TOKEN)
    api.create_repo("acme/soon-private")
    api.upload_file(path_or_fileobj=f"---\nbase_model: {LITE0_REPO}\n---\n# secret title\n".encode(),
                    path_in_repo="README.md", repo_id="acme/soon-private")
    try:
        served = _second_server(site, monkeypatch)  # its map, built now, holds the head
        assert "acme/soon-private" in [s.repo_id for s in catalog.heads_of(served, LITE0_REPO, None)]
        api.update_repo_settings("acme/soon-private", private=True)
        assert "acme/soon-private" not in [s.repo_id for s in catalog.heads_of(served, LITE0_REPO, None)]
        reader = Identity(READER, "reader", "read")
        assert "acme/soon-private" in [s.repo_id for s in catalog.heads_of(served, LITE0_REPO, reader)]
        api.delete_repo("acme/soon-private")
        assert "acme/soon-private" not in [s.repo_id for s in catalog.heads_of(served, LITE0_REPO, reader)]
    finally:
        if api.repo_exists("acme/soon-private"):
            api.delete_repo("acme/soon-private")


def _second_server(site, monkeypatch):
    """What another ``zoo serve`` on the site's store serves (in this process, to look inside)."""
    from zoo.hub.served import ServedRepos
    from zoo.store.objects import open_storage
    from zoo.weights.cache import Cache

    for k, v in site.storage_env.items():
        monkeypatch.setenv(k, v)
    return ServedRepos(Cache(site.root), open_storage(site.storage) if site.storage else None)


def test_unknown_repos_and_revisions_are_pages_that_say_so(site):
    r = get(site, "/acme/tiny-tim")
    assert r.status_code == 404 and "Did you mean" in r.text and 'href="/acme/tiny-timm"' in r.text
    assert "acme/secret" not in get(site, "/acme/secre").text  # suggestions never name a private repo
    r = get(site, "/acme/tiny-timm/tree/nope")
    assert r.status_code == 404 and "no revision" in r.text
    assert get(site, "/datasets/acme/tiny-timm").status_code == 404  # a model is not a dataset
    r = get(site, "/api/nothing")  # an API path stays the API's 404, never a page
    assert r.status_code == 404 and r.headers["X-Error-Message"] == "zoo serve has no endpoint GET /api/nothing"
    assert get(site, "/-/static/zoo.css").status_code == 200
    assert get(site, "/-/static/../app.py").status_code == 404


def test_model_info_reports_safetensors_parameters_as_the_hub_does(site, tmp_path):
    got = hub_client(site, "from huggingface_hub import HfApi\nimport json\n"
                     "i = HfApi().model_info('acme/tiny-timm')\n"
                     "print(json.dumps([i.safetensors.total, i.safetensors.parameters]))", tmp_path)
    assert got == [256, {"F16": 40, "F32": 216}]


def _elements(html: str) -> list[tuple[str, dict]]:
    """Every element of ``html`` with its attributes, as a browser's parser sees them."""
    from html.parser import HTMLParser

    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Collect().feed(html)
    return found


def test_readme_rendering_escapes_html_and_sanitises_links():
    from zoo.hub.pages import render_markdown

    html = str(render_markdown(HOSTILE.format(beacon="http://127.0.0.1:9"), "/acme/x/resolve/c0ffee/"))
    elements = _elements(html)
    assert not {t for t, _ in elements} & {"script", "iframe", "svg", "style", "form", "button", "object", "embed"}
    for tag, attrs in elements:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for a in ("href", "src"):
            assert not (attrs.get(a) or "").lower().startswith(("javascript:", "data:")), (tag, attrs)
    assert "&lt;script&gt;window.__pwned" in html  # shown as the text it is
    assert ("img", {"src": "/acme/x/resolve/c0ffee/logo.png", "alt": "a relative image"}) in elements
    assert any(t == "table" for t, _ in elements)
    links = [attrs for t, attrs in _elements(str(render_markdown("[up](../../etc/passwd) [x](http://e.org)", "/r/")))
             if t == "a"]
    assert links == [{"rel": "noopener noreferrer nofollow"}, {"href": "http://e.org", "rel": "noopener noreferrer nofollow"}]


# ---- in a real browser ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        log = Path(__file__).resolve().parents[2] / ".venv" / "chromium-install.log"
        why = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
        pytest.skip("Debian's chromium is not installed (tools/test.sh installs it with apt-get when it runs as root)"
                    + (f"; apt-get said: {why[0]}" if why else ""))
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        except Error as exc:
            pytest.skip(f"{chromium} does not start under Playwright: {str(exc).splitlines()[0]}")
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory, site):
    return tmp_path_factory.mktemp("screenshots")


def test_click_from_the_index_to_a_head_its_file_and_its_base(site, browser, shots, tmp_path):
    page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site.url + "/")
    page.screenshot(path=shots / "index.png", full_page=True)
    page.click(f"a.repo:text-is('{HEAD_REPO}')")
    page.wait_for_url(f"**/{HEAD_REPO}")
    assert page.inner_text("#repo-id").startswith(HEAD_REPO)
    page.screenshot(path=shots / "head.png", full_page=True)
    row = page.locator("table.files tr", has_text="head.safetensors")
    shown = row.locator("code.sha256").inner_text()
    with page.expect_download() as download:
        row.locator("a.download").click()
    saved = tmp_path / "head.safetensors"
    download.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == shown
    page.click("a.base")
    page.wait_for_url(f"**/{LITE0_REPO}")
    assert "74.85 %" in page.inner_text("#figures")
    assert HEAD_REPO in page.inner_text("#lineage-heads")
    page.screenshot(path=shots / "base.png", full_page=True)
    assert errors == []


def test_search_filters_as_you_type_and_sorting_orders_rows(site, browser, shots):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(site.url + "/")
    assert page.get_attribute("body", "data-instant-search") == "on"  # the script ran (the CSP let it)
    page.fill("#q", "digits")  # no submit: the script hides the other rows
    assert page.inner_text("#shown") == "2"
    assert [a.inner_text() for a in page.locator("#repos tbody tr:visible a.repo").all()] == ["acme/digits", HEAD_REPO]
    assert "q=digits" in page.url
    page.screenshot(path=shots / "search.png", full_page=True)
    page.fill("#q", "")
    page.select_option("select[name=license]", "mit")  # a filter submits the form
    page.wait_for_url("**license=mit**")
    assert [a.inner_text() for a in page.locator("a.repo").all()] == ["acme/hostile"]
    page.goto(site.url + "/")
    page.click("th a[data-sort=params]")
    page.wait_for_url("**sort=params**")
    assert [a.inner_text() for a in page.locator("a.repo").all()][:3] == [LITE0_REPO, HEAD_REPO, "acme/tiny-timm"]
    page.screenshot(path=shots / "sorted.png", full_page=True)
    # without JavaScript the same search is a round trip
    context = browser.new_context(java_script_enabled=False)
    plain = context.new_page()
    plain.goto(site.url + "/")
    plain.fill("#q", "timm")
    plain.press("#q", "Enter")
    plain.wait_for_url("**q=timm**")
    assert sorted(a.inner_text() for a in plain.locator("a.repo").all()) == ["acme/tiny-timm", LITE0_REPO]
    context.close()


def test_a_hostile_readme_runs_nothing_and_sends_nothing_elsewhere(site, browser, shots, beacon):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs, finished, failed = [], [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("requestfinished", lambda r: finished.append(r.url))
    page.on("requestfailed", lambda r: failed.append((r.url, r.failure)))
    page.goto(site.url + "/acme/hostile")
    page.wait_for_load_state("networkidle")
    for selector in ("a:text('click')", "a:text('a javascript link')", "b:text('x')"):
        if page.locator(selector).count():
            page.locator(selector).first.click(timeout=2000, no_wait_after=True)
    page.hover("article.readme")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert dialogs == [] and beacon.hits == []
    assert all(u.startswith(site.url + "/") for u in finished), finished
    print(failed)
    assert [u for u, _ in failed] == [beacon.url + "/beacon.png"]  # the CSP stopped the one the README tried
    text = page.inner_text("article.readme")
    assert '<script>window.__pwned = "script"</script>' in text  # shown, as text
    assert page.locator("article.readme img[src*='logo.png']").evaluate("i => i.naturalWidth") == 120
    page.screenshot(path=shots / "hostile.png", full_page=True)
