"""Libraries log under the ``zoo`` logger and only the CLI prints: ``-v``/``-q``/``ZOO_LOG_LEVEL``,
``zoo serve``'s address and request lines, the cause of an error with ``-v``, and a server that
answers a bug with 500 and a logged traceback, never a 4xx."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import requests
from conftest import HubServer, free_port, run_zoo


def test_serve_logs_its_address_and_each_request(hub):
    assert requests.get(f"{hub.url}/api/models", timeout=10).status_code == 200
    assert requests.get(f"{hub.url}/nobody/nothing/resolve/main/x.bin", timeout=10).status_code == 404
    log = hub.log_text()
    assert f"listening on http://127.0.0.1:{hub.port}" in log
    assert "INFO zoo.hub.app: GET /api/models 200 " in log and " ms" in log
    assert "GET /nobody/nothing/resolve/main/x.bin 404" in log


@pytest.mark.slow  # five CLI runs (~9 s); test_v_prints_the_cause_of_an_error stays quick
def test_library_logs_show_with_v_or_zoo_log_level_and_not_by_default(isolated_env):
    env = {"ZOO_HOME": str(isolated_env), "ZOO_OFFLINE": "1"}
    quiet = run_zoo("pull", "efficientnet_lite0", "-q", env=env)
    assert quiet.returncode == 0 and "zoo.weights.pull" not in quiet.stderr
    run_zoo("cache", "rm", "efficientnet_lite0", env=env)
    loud = run_zoo("-v", "pull", "efficientnet_lite0", "-q", env=env)
    assert loud.returncode == 0 and "INFO zoo.weights.pull: tf_efficientnet_lite0.bundled_in1k: trying pkg://" in loud.stderr
    run_zoo("cache", "rm", "efficientnet_lite0", env=env)
    by_env = run_zoo("pull", "efficientnet_lite0", "-q", env={**env, "ZOO_LOG_LEVEL": "info"})
    assert "gave sha256" in by_env.stderr


def test_v_prints_the_cause_of_an_error(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    args = ("convert", str(garbage), str(tmp_path / "out.safetensors"), "--converter", "efficientnet_lite_pth",
            "--architecture", "tf_efficientnet_lite0")
    plain, verbose = run_zoo(*args), run_zoo("-v", *args)
    assert plain.returncode == verbose.returncode == 1
    assert "is not a loadable weights-only checkpoint" in plain.stderr and "caused by" not in plain.stderr
    assert "caused by" in verbose.stderr and "Traceback" not in verbose.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_an_unexpected_exception_is_a_500_with_its_traceback_logged(caplog):
    """The request log middleware around a real starlette app whose route has a bug."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from zoo.hub.app import RequestLog

    async def broken(request):
        return {}["no such key"]  # a bug: KeyError

    app = Starlette(routes=[Route("/broken", broken)], middleware=[Middleware(RequestLog)])
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/broken", "raw_path": b"/broken", "query_string": b"",
             "headers": [], "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
             "root_path": "", "http_version": "1.1", "asgi": {"version": "3.0"}}
    with caplog.at_level(logging.INFO, logger="zoo"):
        asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 500 and "internal server error" in json.loads(body)["error"]
    failure = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert "GET /broken failed" in failure.getMessage() and failure.exc_info[0] is KeyError
    assert any("GET /broken 500" in r.getMessage() for r in caplog.records)


def test_an_upstream_that_is_down_is_a_502_not_a_silent_404(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    server = HubServer(tmp_path / "mirror", "--upstream", dead)
    try:
        r = requests.get(f"{server.url}/zootest/tiny/resolve/main/model.safetensors", timeout=60)
        assert r.status_code == 502 and dead in r.json()["error"]
        assert "WARNING zoo.hub.app: upstream failure" in server.log_text()
    finally:
        server.stop()
