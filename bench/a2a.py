"""The A2A hand-off rows: completed `SendMessage` round trips, and
`SendStreamingMessage` streams read to their end, through the whole
product, `attach run` (Envoy with the attach filter, and the attach-a2a
service) forwarding to an agent that answers at once, with the task store in
SQLite or PostgreSQL.

Each row starts its own agent (`attach-bench-agent`), its own `attach run`
with a clean environment and, for PostgreSQL, its own private server
(`a2a-service/tests/pg.sh`), and stops all of them again, checking that
nothing the launcher started is left running.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import envoy_setup as es
import wrk
from idp import AUDIENCE
from report import A2aRow

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = REPO / "target/release/attach"
SERVICE = REPO / "target/release/attach-a2a"
AGENT = REPO / "target/release/attach-bench-agent"
PG_SH = REPO / "a2a-service/tests/pg.sh"
AGENT_NAME = "instant"
AGENT_PATH = f"/a2a/agents/{AGENT_NAME}"
SQLITE, POSTGRES = "SQLite", "PostgreSQL"
BANNER = re.compile(r"attach: gateway on http://127\.0\.0\.1:(\d+) -> ")
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15
COMPLETED = "TASK_STATE_COMPLETED"
# Probes start this long after wrk, once its connections are open and busy,
# so that none of them meets an idle gateway.
PROBE_START_S = 0.5

# One blocking 1.0 SendMessage per request, each with its own messageId.
SEND_MESSAGE_LUA = wrk.numbered_post_script(
    """'{"jsonrpc":"2.0","id":%d,"method":"SendMessage","params":{"message":'
  .. '{"messageId":"%s-%d","role":"ROLE_USER","parts":[{"text":"ping"}]},'
  .. '"configuration":{"returnImmediately":false}}}'""",
    "counter, prefix, counter",
)

# One 1.0 SendStreamingMessage per request, each with its own messageId; a
# 200 counts only when its body ends with the completed status update (the
# gateway ends each data line and each event with "\n").
SEND_STREAM_LUA = wrk.numbered_post_script(
    """'{"jsonrpc":"2.0","id":%d,"method":"SendStreamingMessage","params":{"message":'
  .. '{"messageId":"%s-%d","role":"ROLE_USER","parts":[{"text":"ping"}]}}}'""",
    "counter, prefix, counter",
    accept=r"""function accept(status, headers, body)
  local last = body:match(".*data: ([^\n]*)\n\n$")
  return status == 200 and last ~= nil
    and last:find('"statusUpdate":', 1, true) ~= nil
    and last:find('"state":"TASK_STATE_COMPLETED"', 1, true) ~= nil
end""",
)


def plan():
    """The rows in the order they run."""
    return [
        A2aRow("a2a-sqlite", SQLITE),
        A2aRow("a2a-pg", POSTGRES),
        A2aRow("a2a-stream-sqlite", SQLITE, streaming=True),
        A2aRow("a2a-stream-pg", POSTGRES, streaming=True),
    ]


def missing_binaries():
    """Lines naming each binary the rows need and cannot find."""
    needs = [
        (LAUNCHER, "cargo build --release -p attach-launcher"),
        (SERVICE, "cargo build --release -p attach-a2a-service"),
        (AGENT, "cargo build --release -p attach-bench-agent"),
    ]
    return [f"{path} not built ({how})" for path, how in needs if not os.access(path, os.X_OK)]


# -- processes ----------------------------------------------------------------


def _proc_table():
    """{pid: parent pid} of every live (non-zombie) process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] not in ("Z", "X"):
            table[int(entry)] = int(fields[1])
    return table


def _descendants(pid):
    children = {}
    for p, parent in _proc_table().items():
        children.setdefault(parent, []).append(p)
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _tail(path, lines=30):
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(text[-lines:])


class Agent:
    """`attach-bench-agent` on a free port."""

    def __init__(self, workdir):
        self.log = workdir / "agent.stderr.log"
        self.proc = None
        self.url = None

    def start(self):
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [str(AGENT)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True
            )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            raise es.SetupFailed(f"attach-bench-agent printed {line!r} instead of its URL\n{_tail(self.log)}")
        self.url = line

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise es.SetupFailed(f"attach-bench-agent still running {STOP_TIMEOUT_S}s after SIGTERM")
        finally:
            self.proc.stdout.close()
            self.proc = None


class Gateway:
    """`attach run` in its own process group, with a clean environment."""

    def __init__(self, workdir, env):
        self.workdir = workdir
        self.env = env
        self.stdout = workdir / "attach.stdout.log"
        self.stderr = workdir / "attach.stderr.log"
        self.proc = None
        self.port = None
        self.children = []

    def start(self):
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [str(LAUNCHER), "run"],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.port is None:
            if self.proc.poll() is not None:
                raise es.SetupFailed(f"`attach run` exited with {self.proc.returncode}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise es.SetupFailed(f"no start-up banner within {START_TIMEOUT_S}s\n{self.log_tail()}")
            m = BANNER.search(self.stdout.read_text(errors="replace"))
            if m:
                self.port = int(m.group(1))
            else:
                time.sleep(0.05)

    def envoy_concurrency(self):
        """Envoy's `--concurrency` as the launcher started it."""
        for pid in self.children:
            m = re.search(r"--concurrency (\d+)", _cmdline(pid))
            if m:
                return int(m.group(1))
        raise es.SetupFailed(f"no Envoy with --concurrency among {self.children}\n{self.log_tail()}")

    def stop(self):
        """SIGTERM; then nothing the launcher started may be left running."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        known = set(self.children) | set(_descendants(proc.pid))
        problems = []
        if proc.poll() is not None:
            problems.append(f"`attach run` had already exited with {proc.returncode}")
        else:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(STOP_TIMEOUT_S)
                if rc != 0:
                    problems.append(f"`attach run` exited with {rc} after SIGTERM")
            except subprocess.TimeoutExpired:
                problems.append(f"`attach run` still running {STOP_TIMEOUT_S}s after SIGTERM")
        deadline = time.monotonic() + 2
        while (left := known & set(_proc_table())) and time.monotonic() < deadline:
            time.sleep(0.05)
        problems += [f"left running after SIGTERM: pid {p}: {_cmdline(p)}" for p in sorted(left)]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        if problems:
            raise es.SetupFailed("\n".join(problems) + "\n" + self.log_tail())

    def log_tail(self):
        return _tail(self.stdout) + "\n" + _tail(self.stderr)

    def rpc(self, token, method, params, timeout=20):
        """(HTTP status, parsed reply or raw text) of one 1.0 JSON-RPC call."""
        body = json.dumps({"jsonrpc": "2.0", "id": str(uuid.uuid4()), "method": method, "params": params})
        conn = http.client.HTTPConnection(es.HOST, self.port, timeout=timeout)
        try:
            conn.request("POST", AGENT_PATH, body, headers(token))
            response = conn.getresponse()
            raw = response.read().decode(errors="replace")
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw


def headers(token):
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "A2A-Version": "1.0"}


class PostgresServer:
    """A private server from pg.sh, its state file in our own folder."""

    def __init__(self, workdir):
        self.env = dict(os.environ, A2A_PG_STATE=str(workdir / "pg.state"))
        self.url = None

    def start(self):
        done = subprocess.run([str(PG_SH), "start"], env=self.env, capture_output=True, text=True, timeout=120)
        m = re.search(r"^export A2A_TEST_DATABASE_URL=(\S+)$", done.stdout, re.M)
        if done.returncode != 0 or not m:
            said = done.stderr.strip() or done.stdout.strip()
            raise es.SetupFailed(f"pg.sh start failed ({done.returncode}): {said}")
        self.url = m.group(1)

    def stop(self):
        subprocess.run([str(PG_SH), "stop"], env=self.env, capture_output=True, timeout=60, check=False)


def postgres_version():
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not bins:
        return "?"
    out = subprocess.run([str(bins[-1]), "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"(\d+(?:\.\d+)*)", out)
    return m.group(1) if m else "?"


# -- one row ------------------------------------------------------------------

# Variables the launcher or the service read: none may leak in from the caller.
_OWN_VARS = ("ATTACH_", "OIDC_", "DID_", "A2A_", "ENGINE_URL", "ENVOY_BIN")


def gateway_env(workdir, envoy, wasm, issuer, agent_url, database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_VARS)}
    env.update(
        ATTACH_PORT=str(es.free_ports(1)[0]),
        ATTACH_DATA_DIR=str(workdir / "data"),
        ATTACH_WASM=str(wasm),
        ENVOY_BIN=str(envoy),
        ENGINE_URL=agent_url,
        OIDC_ISSUER=issuer,
        OIDC_AUD=AUDIENCE,
        A2A_AGENTS=f"{AGENT_NAME}={agent_url};timeout=10",
    )
    if database_url:
        env["A2A_DATABASE_URL"] = database_url
    return env


def _state(reply):
    if isinstance(reply, dict):
        return (reply.get("result") or {}).get("task", {}).get("status", {}).get("state")
    return None


def first_round_trip(gateway, token):
    """One SendMessage must come back completed; the filter fetches its
    keys in the background, so early refusals are retried for a while."""
    deadline = time.monotonic() + START_TIMEOUT_S
    message = {"messageId": str(uuid.uuid4()), "role": "ROLE_USER", "parts": [{"text": "ping"}]}
    params = {"message": message, "configuration": {"returnImmediately": False}}
    while True:
        try:
            status, reply = gateway.rpc(token, "SendMessage", params)
        except (OSError, http.client.HTTPException) as e:
            status, reply = None, str(e)
        if status == 200:
            state = _state(reply)
            if state != COMPLETED:
                raise es.SetupFailed(f"SendMessage ended {state}, not completed: {reply}\n{gateway.log_tail()}")
            return
        if time.monotonic() > deadline:
            raise es.SetupFailed(f"SendMessage answered {status}: {reply}\n{gateway.log_tail()}")
        message["messageId"] = str(uuid.uuid4())
        time.sleep(0.2)


def count_tasks(gateway, token, state):
    status, reply = gateway.rpc(token, "ListTasks", {"status": state, "pageSize": 1})
    total = (reply.get("result") or {}).get("totalSize") if status == 200 and isinstance(reply, dict) else None
    if not isinstance(total, int):
        raise es.SetupFailed(f"ListTasks answered {status}: {reply}")
    return total


# -- streams ------------------------------------------------------------------


def _events(chunk, pending):
    """The data of each event `chunk` completes, parsed; `pending` (a
    bytearray) holds what is left of an event not yet ended. The gateway
    ends lines with "\n", so an event ends at the first "\n\n"; comments
    (keep-alives) carry no data and are skipped."""
    pending += chunk
    done = []
    while (end := pending.find(b"\n\n")) >= 0:
        event = bytes(pending[:end])
        del pending[: end + 2]
        data = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if data:
            done.append(json.loads(b"\n".join(data)))
    return done


def _stream_state(event):
    """The task state a 1.0 StreamResponse event carries, and which member
    carries it ("task" or "statusUpdate"), from a JSON-RPC response."""
    result = event.get("result") if isinstance(event, dict) else None
    for member in ("task", "statusUpdate"):
        found = result.get(member) if isinstance(result, dict) else None
        if isinstance(found, dict) and isinstance(found.get("status"), dict):
            return member, found["status"].get("state")
    return None, None


def stream_once(conn, token, text):
    """One SendStreamingMessage on `conn`, its events read as their bytes
    arrive; (µs until the first event was whole, µs until the stream ended).
    Raises unless the stream opens with the task and ends with it
    completed."""
    message = {"messageId": str(uuid.uuid4()), "role": "ROLE_USER", "parts": [{"text": text}]}
    params = {"message": message}
    body = json.dumps({"jsonrpc": "2.0", "id": text, "method": "SendStreamingMessage", "params": params})
    t0 = time.perf_counter_ns()
    conn.request("POST", AGENT_PATH, body, headers(token))
    response = conn.getresponse()
    ctype = response.getheader("Content-Type") or ""
    if response.status != 200 or not ctype.startswith("text/event-stream"):
        raise es.SetupFailed(f"SendStreamingMessage answered {response.status} {ctype}: {response.read()[:300]!r}")
    events, pending, first = [], bytearray(), None
    while chunk := response.read1(65536):
        events += _events(chunk, pending)
        if first is None and events:
            first = time.perf_counter_ns()
    ended = time.perf_counter_ns()
    if first is None or pending.strip():
        raise es.SetupFailed(f"stream ended with {len(events)} events and {bytes(pending[:300])!r} left over")
    opened, closed = _stream_state(events[0]), _stream_state(events[-1])
    if opened[0] != "task" or closed != ("statusUpdate", COMPLETED):
        raise es.SetupFailed(f"stream opened with {opened} and ended with {closed}: {events}")
    return (first - t0) / 1000, (ended - t0) / 1000


def first_stream(gateway, token):
    """One stream, checked whole before the load."""
    conn = http.client.HTTPConnection(es.HOST, gateway.port, timeout=20)
    try:
        stream_once(conn, token, "setup-stream")
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise es.SetupFailed(f"SendStreamingMessage failed: {e}\n{gateway.log_tail()}") from None
    finally:
        conn.close()


def probing(gateway, token, run):
    """Calls `run` (wrk's measured run) while sequential streams on one
    keep-alive connection probe the gateway under that load; returns what
    `run` returned and each probe's (first event µs, stream end µs), those
    still open when `run` returned left out."""
    stop, probes, errors = threading.Event(), [], []

    def probe():
        conn = http.client.HTTPConnection(es.HOST, gateway.port, timeout=20)
        try:
            stop.wait(PROBE_START_S)
            while not stop.is_set():
                sample = stream_once(conn, token, f"probe-{len(probes)}")
                if not stop.is_set():
                    probes.append(sample)
        except (es.SetupFailed, OSError, http.client.HTTPException, ValueError) as e:
            errors.append(e)
        finally:
            conn.close()

    thread = threading.Thread(target=probe, name="stream-probe")
    thread.start()
    try:
        result = run()
    finally:
        stop.set()
        thread.join()
    if errors:
        raise es.SetupFailed(f"stream probe {len(probes) + 1} failed: {errors[0]}\n{gateway.log_tail()}")
    if not probes:
        raise es.SetupFailed("no stream probe finished during the load")
    return result, probes


def load_and_check(row, gateway, token, load, warmup_s, script):
    url = f"http://{es.HOST}:{gateway.port}{AGENT_PATH}"
    sent = [f"{k}: {v}" for k, v in headers(token).items()]
    warm = wrk.run(url, load, sent, duration_s=warmup_s, script=script, script_args=["warmup"])

    def measured():
        return wrk.run(url, load, sent, script=script, script_args=["measured"])

    if row.streaming:
        result, row.probes = probing(gateway, token, measured)
    else:
        result = measured()
    problems = [f"warm-up: {p}" for p in warm.problems()] + result.problems()
    if problems:
        raise es.SetupFailed("wrk saw errors: " + "; ".join(problems) + "\n" + gateway.log_tail())
    completed = count_tasks(gateway, token, COMPLETED)
    failed = count_tasks(gateway, token, "TASK_STATE_FAILED")
    # Before the load: one SendMessage, and for a streaming row one stream.
    answered = warm.requests + result.requests + len(row.probes) + (2 if row.streaming else 1)
    # Requests wrk abandoned when its time ran out may still be on their way.
    expected = answered - load.connections
    if completed < expected or failed:
        raise es.SetupFailed(
            f"ListTasks reports {completed:,} completed and {failed:,} failed tasks after "
            f"{answered:,} answers (expected at least {expected:,} completed and none failed): "
            "some 200 replies were not completed tasks\n" + gateway.log_tail()
        )
    row.checked = f"{completed:,} completed tasks listed for {answered:,} answered requests"
    return result


def measure(row, workdir, envoy, wasm, issuer, token, load, warmup_s):
    """Runs one row's stack, load and checks and stops the stack again;
    returns wrk's result, or raises with what went wrong."""
    workdir.mkdir(parents=True)
    script = workdir / ("send-stream.lua" if row.streaming else "send-message.lua")
    script.write_text(SEND_STREAM_LUA if row.streaming else SEND_MESSAGE_LUA)
    agent, pg, gateway = Agent(workdir), None, None
    failure = None
    try:
        agent.start()
        if row.store == POSTGRES:
            pg = PostgresServer(workdir)
            pg.start()
        env = gateway_env(workdir, envoy, wasm, issuer, agent.url, pg and pg.url)
        gateway = Gateway(workdir, env)
        gateway.start()
        first_round_trip(gateway, token)
        if row.streaming:
            first_stream(gateway, token)
        gateway.children = _descendants(gateway.proc.pid)
        row.workers = gateway.envoy_concurrency()
        return load_and_check(row, gateway, token, load, warmup_s, script)
    except BaseException as e:
        failure = e
        raise
    finally:
        problems = stop_all(gateway, agent, pg)
        if problems and failure is None:
            raise es.SetupFailed("\n".join(problems))


def stop_all(gateway, agent, pg):
    """Stops whatever was started, the gateway first; returns what went wrong."""
    problems = []
    for stop in (gateway and gateway.stop, agent.stop, pg and pg.stop):
        if stop:
            try:
                stop()
            except (es.SetupFailed, OSError, subprocess.SubprocessError) as e:
                problems.append(str(e))
    return problems


def notes(load, warmup_s, rows):
    workers = sorted({r.workers for r in rows if r.workers})
    worker_text = "/".join(str(w) for w in workers) or "?"
    out = [
        f"Load: `{load.describe()} -s send-message.lua` against `attach run` on `{AGENT_PATH}`; "
        f"each row first runs an unreported {warmup_s} s warm-up. Every request is an A2A 1.0 "
        "`SendMessage` (`A2A-Version: 1.0`, `configuration.returnImmediately: false`, a fresh "
        "`messageId`) with the same ES256 bearer token, so the reply is the completed task.",
        "Each request: Envoy → attach filter (verified-token cache hit) → attach-a2a → store write "
        "(task submitted, `task_sent` memory event, task working) → forward to `attach-bench-agent`, "
        "which answers at once with a completed task → store write (task completed, `task_result` "
        "memory event) → the task read back and returned.",
        f"Workers: the launcher's default, one per CPU: Envoy `--concurrency {worker_text}`; attach-a2a "
        "runs tokio's default multi-threaded runtime (one thread per CPU) and its default connection "
        "pool; the agent runs on one thread. Everything, wrk included, shares this machine.",
        "SQLite: the service's default store, a WAL-journalled file (`synchronous = NORMAL`) in a "
        "fresh temporary folder.",
        f"PostgreSQL: {postgres_version()} from Debian's package, a private server started by "
        "`a2a-service/tests/pg.sh` on 127.0.0.1 with `fsync=off` (faster than a durable setup).",
        "Checked per row: one `SendMessage` sent before the load must return `TASK_STATE_COMPLETED`; "
        "after it, `ListTasks` (`status: TASK_STATE_COMPLETED`, `pageSize: 1`, its `totalSize`) "
        "must count at least every request wrk got an answer for (less the connections still in "
        "flight when wrk stopped), none failed, and wrk must see no non-2xx replies or socket errors.",
        f"Streams: `{load.describe()} -s send-stream.lua`, the same path, token and warm-up; every "
        "request is an A2A 1.0 `SendStreamingMessage` (a fresh `messageId`), answered "
        "`text/event-stream`, chunked. wrk's round trip is the whole stream, from sending the request "
        "to the end of the body after the terminal event: streams/s, p50 and p99 are of whole streams.",
        "Each stream: Envoy → attach filter (verified-token cache hit) → attach-a2a → store write "
        "(task submitted, `task_sent` memory event) → the first event, the task as submitted, while "
        "the exchange goes on: store write (task working) → the second event, a `statusUpdate` "
        "working → the agent's card looked up (`attach-bench-agent` serves none; the miss is cached "
        "for 30 s), so the agent is not asked for a stream and gets a plain `SendMessage`, answered at "
        "once with a completed task → store write (task completed, `task_result` memory event) → the "
        "third event, a `statusUpdate` completed with the agent's reply, and the stream ends.",
        "First event and stream end: one client sending streams one after the other on one keep-alive "
        f"connection (Python `http.client`, reading the body as its bytes arrive) from {PROBE_START_S} s "
        "after wrk's measured run starts until it ends, so each probe meets the full load, one more "
        "connection beside wrk's; a probe still open when wrk stops is left out. First event: from "
        "just before the request is written to the moment the bytes that end the first event "
        "(its blank line) have been read. Stream end: from the same start to the end of the chunked "
        "body. p50 and p99 are nearest-rank over the probes of a row.",
        "Checked per streaming row: before the load, one `SendMessage` as above and one stream read "
        "whole; during it, every response wrk reads must be a 200 whose body's last event is a "
        "`statusUpdate` with `\"state\":\"TASK_STATE_COMPLETED\"` (its Lua `response` counts any "
        "other; one fails the row), and every probe must open with the task and end with it "
        "completed; after it, the same `ListTasks` count, the probes and the checks before the load "
        "counted as answered requests.",
    ]
    out += [f"{r.store}{' streams' if r.streaming else ''}: {r.checked}." for r in rows if r.checked]
    return out
