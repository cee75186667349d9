"""The demo page (`/demo`, ATTACH_DEV=on) in a real browser.

A stack as `make run` starts it (the gateway, the companion service, the
example planner and coder agents) with the engine stand-in behind it; the
Node script in tests/browser drives Debian's Chromium through playwright-core
on the page, and reports what it saw as JSON. Without Chromium or the
script's node_modules (make browser-peers) the tests are skipped, or fail
under CI.
"""

import json
import os
import shutil
import socket
import subprocess

import pytest

import httpc
from engine import Engine
from gateway import REPO
from netutil import HOST
from stack import launch_stack

CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
BROWSER_DIR = REPO / "tests/browser"
SCRIPT = BROWSER_DIR / "demo.mjs"
PAGE = REPO / "examples/static/demo.html"
AGENT_BIN = REPO / "target/release/attach-agent"
SHOTS = REPO / "target/demo"

PROMPT = "Write Python to sort a list."
CODE = "def sort_list(items):\n    return sorted(items)"
# One reply for every model call: the planner's plan and the coder's code.
REPLY = (
    "1. Take the list.\n2. Return it sorted with sorted().\n\n"
    f"```python\n{CODE}\n\nprint(sort_list([3, 1, 2]))\n```\n"
)


def _missing():
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (make browser-peers installs Debian's chromium)")
    if shutil.which("node") is None:
        missing.append("node (make browser-peers installs nodejs)")
    if not (BROWSER_DIR / "node_modules/playwright-core/package.json").is_file():
        missing.append(f"{BROWSER_DIR}/node_modules (make browser-peers runs npm ci there)")
    return missing


@pytest.fixture
def browser(artifacts):
    missing = _missing()
    if missing:
        why = "the browser test needs:\n  " + "\n  ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    if not os.access(AGENT_BIN, os.X_OK):
        pytest.fail(f"the demo agents {AGENT_BIN} are not built (make launcher)", pytrace=False)


def demo_stack(workdir, upstream):
    return launch_stack(
        workdir,
        a2a=True,
        upstream=upstream,
        # The stack has an OIDC issuer: DID sign-in is on only when asked for.
        env={"ATTACH_DEV": "on", "ATTACH_DEMO_PAGE": str(PAGE), "DID_ALLOW": "did:key:*"},
    )


def drive(gateway, case, screenshot, timeout=180):
    """Runs the Node script on the gateway's /demo; returns its report."""
    options = {
        "url": f"http://{HOST}:{gateway.port}/demo",
        "case": case,
        "prompt": PROMPT,
        "code": CODE,
        "screenshot": str(screenshot),
    }
    done = subprocess.run(
        ["node", str(SCRIPT), json.dumps(options)],
        cwd=BROWSER_DIR,
        env=dict(os.environ, CHROMIUM=CHROMIUM),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = done.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise AssertionError(
            f"the browser script exited {done.returncode} without a report\n"
            f"stdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-3000:]}"
        ) from None
    report["returncode"] = done.returncode
    report["stderr"] = done.stderr[-3000:]
    return report


def explain(report):
    observed = dict(report.get("observed") or {})
    observed.pop("console", None)
    return (
        "\n  ".join(["the demo page in Chromium:"] + report.get("failures", []))
        + f"\nobserved: {json.dumps(observed, indent=1)[:6000]}"
        + f"\nbrowser console: {json.dumps((report.get('observed') or {}).get('console', [])[-20:], indent=1)}"
        + (f"\nstderr: {report['stderr']}" if report.get("stderr") else "")
    )


def test_the_page_plans_codes_and_shows_the_memory_of_the_session(tmp_path, browser):
    with Engine(reply=REPLY) as engine, demo_stack(tmp_path / "stack", engine) as s:
        # The page and the token are public in dev mode.
        page = httpc.request(s.gateway.port, "GET", "/demo")
        assert page.status == 200, page
        assert page.body == PAGE.read_bytes()
        token = httpc.request(s.gateway.port, "GET", "/dev/token")
        assert token.status == 200, token

        report = drive(s.gateway, "answer", SHOTS / "demo.png")
        assert report["ok"] and report["returncode"] == 0, explain(report)
        observed = report["observed"]
        chats = [r for r in engine.requests if r.path.split("?")[0] == "/api/chat"]
        assert len(chats) == 2, f"expected the planner's and the coder's model call: {chats}"
        planner_chat, coder_chat = chats
        planner, coder, user = (
            json.loads((s.gateway.data_dir / name).read_text())["did"]
            for name in ("agent-planner.json", "agent-coder.json", "identity.json")
        )

    assert observed["state"] == "completed"
    assert observed["planner_message"].startswith("Plan stored as ")
    assert any(CODE in block for block in observed["code_blocks"]), observed["coder_reply"]
    kinds = [row["kind"] for row in observed["memory_rows"]]
    assert "plan" in kinds and {"prompt", "reply"} <= set(kinds), kinds
    # Who acted: the agents' own DIDs, created by the launcher, on the task
    # and on the plan the planner stored (current actor first).
    assert observed["task_actors"].split(", ")[0] == planner, observed["task_actors"]
    plans = [row for row in observed["memory_rows"] if row["kind"] == "plan"]
    assert [row["actor"] for row in plans] == [planner], plans
    # The mirrored model calls name the agent that made them (newest first).
    prompts = [row["actor"] for row in observed["memory_rows"] if row["kind"] == "prompt"]
    assert prompts == [f"{coder}, {planner}", planner], prompts
    # The engine saw the user and, for the coder's call, both agents.
    assert planner_chat.header("x-attach-actor") == planner
    assert coder_chat.header("x-attach-actor") == f"{coder}, {planner}"
    assert coder_chat.header("x-attach-user") == planner_chat.header("x-attach-user") == user
    assert (SHOTS / "demo.png").stat().st_size > 0


def test_the_dev_token_goes_only_to_the_gateways_own_origin(tmp_path, artifacts):
    """A DNS-rebinding page reaches the gateway under its own host name, and
    a page of another site sends its Origin: neither gets the operator's token."""
    if not os.access(AGENT_BIN, os.X_OK):
        pytest.fail(f"the demo agents {AGENT_BIN} are not built (make launcher)", pytrace=False)
    with Engine(reply=REPLY) as engine, demo_stack(tmp_path / "stack", engine) as s:
        port = s.gateway.port
        refused = {
            "rebound-host": [("Host", f"evil.example:{port}")],
            "other-host": [("Host", "evil.example")],
            "cross-site-origin": [("Host", f"127.0.0.1:{port}"), ("Origin", "http://evil.example")],
            "other-port-origin": [("Host", f"127.0.0.1:{port}"), ("Origin", "http://127.0.0.1:1")],
            "cross-site-fetch": [("Host", f"127.0.0.1:{port}"), ("Sec-Fetch-Site", "cross-site")],
        }
        for case, headers in refused.items():
            resp = httpc.request(port, "GET", "/dev/token", headers)
            assert resp.status == 403, (case, resp)
            assert b"token" not in resp.body, (case, resp)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            same = [("Host", host), ("Origin", f"http://{host}"), ("Sec-Fetch-Site", "same-origin")]
            resp = httpc.request(port, "GET", "/dev/token", same)
            assert resp.status == 200 and resp.json()["token"].count(".") == 2, (host, resp)
        # The gateway still answers.
        assert httpc.request(port, "GET", "/demo").status == 200


def test_without_an_engine_the_page_says_so_and_the_task_fails_plainly(tmp_path, browser):
    # A port bound but never listened on: connections are refused, and no
    # other part of the stack can be given the port meanwhile.
    with socket.socket() as closed:
        closed.bind((HOST, 0))

        class ClosedPort:
            url = f"http://{HOST}:{closed.getsockname()[1]}"

        with demo_stack(tmp_path / "stack", ClosedPort()) as s:
            report = drive(s.gateway, "no-engine", SHOTS / "demo-no-engine.png")
    assert report["ok"] and report["returncode"] == 0, explain(report)
    observed = report["observed"]
    assert "No model engine is answering at ENGINE_URL" in observed["notice"]
    assert observed["state_attr"] == "TASK_STATE_FAILED"
    assert "model engine is not answering" in observed["planner_message"]
    # The notice shows up at once, and the failure within a few seconds.
    assert observed["timings_ms"]["notice"] < 5000, observed["timings_ms"]
    assert observed["timings_ms"]["task"] < 10000, observed["timings_ms"]
