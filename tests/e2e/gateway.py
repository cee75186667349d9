"""Runs the real launcher (`attach run`), which runs the real Envoy with the filter.

A Gateway owns one launcher process (in its own process group), its log
files and its ports. stop() sends SIGTERM and then checks that the launcher,
Envoy and every other process it started are gone and that nothing listens
on the gateway's ports any more; it raises AssertionError listing whatever
was left, after killing it.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpc
from netutil import HOST, free_ports, is_listening, wait_until


def find_repo_root():
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "Cargo.toml").is_file() and (parent / "filter").is_dir():
            return parent
    raise RuntimeError(f"no repository root above {here}")


REPO = find_repo_root()

# Variables of the launcher that must never leak in from the caller's environment.
_OWN_VARS = (
    "ATTACH_", "OIDC_", "DID_", "A2A_", "MCP_", "MEM_", "WEAVIATE_", "ENGINE_URL", "ENVOY_BIN",
    "MAX_TOKENS_PER_MIN", "WINDOW", "MAX_REQUEST_BYTES", "USAGE_",
)

BANNER = re.compile(
    r"attach: gateway on http://127\.0\.0\.1:(\d+) -> (\S+) \(envoy admin unix:(\S+)\)"
)

# Envoy's admin interface: a Unix socket in the gateway's run folder.
ADMIN_SOCKET = "envoy-admin.sock"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("admin", timeout=timeout)
        self.unix_path = str(path)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def admin_request(path_to_socket, method, path, timeout=10):
    """One request to Envoy's admin interface over its Unix socket."""
    conn = _UnixHTTPConnection(path_to_socket, timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return httpc.Response(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


def launcher_bin():
    return Path(os.environ.get("ATTACH_BIN") or REPO / "target/release/attach")


def wasm_path():
    return Path(
        os.environ.get("ATTACH_WASM") or REPO / "target/wasm32-wasip1/release/attach_filter.wasm"
    )


def a2a_bin():
    return Path(os.environ.get("ATTACH_A2A_BIN") or REPO / "target/release/attach-a2a")


def envoy_bin():
    if os.environ.get("ENVOY_BIN"):
        return Path(os.environ["ENVOY_BIN"])
    venv = REPO / ".venv/bin/envoy"
    if venv.exists():
        return venv
    found = shutil.which("envoy")
    return Path(found) if found else venv


def missing_artifacts():
    """Human-readable lines for each thing the suite needs but cannot find."""
    missing = []
    if not os.access(launcher_bin(), os.X_OK):
        missing.append(f"launcher {launcher_bin()} (cargo build --release -p attach-launcher)")
    if not wasm_path().is_file():
        missing.append(f"filter {wasm_path()} (make wasm)")
    if not os.access(envoy_bin(), os.X_OK):
        missing.append(f"envoy {envoy_bin()} (make venv, or set ENVOY_BIN)")
    return missing


def _proc_table():
    """{pid: (ppid, state)} for every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("latin-1")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def descendants(pid):
    """Pids of every live process below pid."""
    table = _proc_table()
    children = {}
    for p, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(p)
    found, pending = [], [pid]
    while pending:
        for c in children.get(pending.pop(), []):
            found.append(c)
            pending.append(c)
    return found


def alive(pid):
    """True for a running (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("latin-1")
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("latin-1").strip()
    except OSError:
        return "?"


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith(_OWN_VARS)}


class Gateway:
    """One `attach run` process.

    issuer/audiences become OIDC_ISSUER/OIDC_AUD (omitted when issuer is None);
    config is written to a JSON file passed as ATTACH_CONFIG (omitted when
    None). resource="auto" sets the config's resource to the gateway's base URL
    unless the config already has one; resource=None leaves it unset.
    Envoy's admin interface is the Unix socket admin_socket (see admin()).
    a2a=True also runs the A2A service (ATTACH_A2A=on) on a free port
    (a2a_port); by default the gateway runs without it (ATTACH_A2A=off).
    """

    running = set()  # gateways started and not yet stopped, for failure reports

    def __init__(
        self,
        workdir,
        engine_url,
        issuer=None,
        audiences=("attach-api",),
        config=None,
        resource="auto",
        concurrency=1,
        port=None,
        data_dir=None,
        env=None,
        log_level=None,
        a2a=False,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_ports(1)[0]
        self.base_url = f"http://{HOST}:{self.port}"
        self.engine_url = engine_url
        self.issuer = issuer
        self.audiences = list(audiences)
        self.config = None if config is None else json.loads(json.dumps(config))
        if resource == "auto":
            if self.config is None:
                self.config = {}
            resource = self.config.setdefault("resource", self.base_url)
        elif resource is not None:
            self.config = dict(self.config or {}, resource=resource)
        self.resource = resource or self.base_url
        self.concurrency = concurrency
        self.data_dir = Path(data_dir) if data_dir else self.workdir / "data"
        self.admin_socket = self.data_dir / f"run-{self.port}" / ADMIN_SOCKET
        self.extra_env = dict(env or {})
        self.a2a = a2a
        self.a2a_port = free_ports(1)[0] if a2a else None
        self.log_level = log_level or os.environ.get("E2E_ATTACH_LOG_LEVEL", "info")
        self.stdout_path = self.workdir / "attach.stdout.log"
        self.stderr_path = self.workdir / "attach.stderr.log"
        self.config_path = self.workdir / "attach-config.json"
        self.proc = None
        self.returncode = None
        self._known = set()

    # -- environment ------------------------------------------------------

    def env(self):
        env = clean_env()
        env.update(
            ATTACH_PORT=str(self.port),
            ENGINE_URL=self.engine_url,
            ATTACH_WASM=str(wasm_path()),
            ENVOY_BIN=str(envoy_bin()),
            ATTACH_CONCURRENCY=str(self.concurrency),
            ATTACH_LOG_LEVEL=self.log_level,
            ATTACH_DATA_DIR=str(self.data_dir),
            ATTACH_A2A="on" if self.a2a else "off",
        )
        if self.a2a:
            env["ATTACH_A2A_BIN"] = str(a2a_bin())
            env["A2A_PORT"] = str(self.a2a_port)
        if self.issuer is not None:
            env["OIDC_ISSUER"] = self.issuer
            env["OIDC_AUD"] = ",".join(self.audiences)
        if self.config is not None:
            self.config_path.write_text(json.dumps(self.config, indent=2))
            env["ATTACH_CONFIG"] = str(self.config_path)
        env.update(self.extra_env)
        return {k: v for k, v in env.items() if v is not None}

    # -- lifecycle --------------------------------------------------------

    def start(self, timeout=30):
        """Starts `attach run` and waits until the listener answers HTTP."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.a2a and not os.access(a2a_bin(), os.X_OK):
            raise AssertionError(
                f"A2A service {a2a_bin()} not built "
                "(cargo build --release -p attach-a2a-service)"
            )
        env = self.env()
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [str(launcher_bin()), "run"],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        Gateway.running.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            try:
                self.stop()
            except AssertionError:
                pass
            raise
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(
                    f"`attach run` exited with {rc} before its listener answered\n{self.log_tail()}"
                )
            try:
                httpc.request(self.port, "GET", httpc.METADATA_PATH, timeout=2)
                break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"listener 127.0.0.1:{self.port} did not answer within {timeout}s\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)
        self._known.update(descendants(self.proc.pid))

    def banner(self):
        """The launcher's start-up line as a regex match, or None."""
        for path in (self.stdout_path, self.stderr_path):
            try:
                m = BANNER.search(path.read_text(errors="replace"))
            except OSError:
                continue
            if m:
                return m
        return None

    def processes(self):
        """(pid, command line) of the launcher and everything it started."""
        pids = [self.proc.pid] + descendants(self.proc.pid)
        return [(p, _cmdline(p)) for p in pids if alive(p)]

    def ports(self):
        return [p for p in (self.port, self.a2a_port) if p]

    def admin(self, method, path, timeout=10):
        """One request to Envoy's admin interface (its Unix socket)."""
        return admin_request(self.admin_socket, method, path, timeout)

    def stop(self, timeout=15):
        """SIGTERM, then verify that nothing of the gateway is left running or listening."""
        proc = self.proc
        if proc is None:
            return
        Gateway.running.discard(self)
        problems = []
        try:
            self._known.update(descendants(proc.pid))
            rc = proc.poll()
            if rc is not None:
                self.returncode = rc
                problems.append(f"`attach run` had already exited with {rc}")
            else:
                proc.send_signal(signal.SIGTERM)
                try:
                    self.returncode = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    problems.append(f"`attach run` still running {timeout}s after SIGTERM")
            # Whatever the launcher started must be gone with it.
            wait_until(lambda: not any(alive(p) for p in self._known), 2)
            for pid in sorted(self._known):
                if alive(pid):
                    problems.append(f"left running after SIGTERM: pid {pid}: {_cmdline(pid)}")
        finally:
            self._kill_everything()
            self.proc = None
        for port in self.ports():
            if wait_until(lambda: not is_listening(port), 2) is False:
                problems.append(f"127.0.0.1:{port} still accepts connections after stop")
        if problems:
            raise AssertionError("\n".join(problems) + "\n" + self.log_tail())

    def _kill_everything(self):
        proc = self.proc
        for pid in list(self._known):
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- diagnostics --------------------------------------------------------

    def log_tail(self, lines=40):
        parts = []
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            try:
                text = path.read_text(errors="replace").splitlines()
            except OSError:
                text = []
            parts.append(f"--- attach {label} (last {lines} lines) ---")
            parts.extend(line if len(line) <= 300 else line[:300] + " ..." for line in text[-lines:])
        return "\n".join(parts)

    # -- requests -------------------------------------------------------------

    def request(self, method="GET", path="/", headers=(), body=None, token=None, timeout=20):
        headers = list(headers.items()) if isinstance(headers, dict) else list(headers)
        if token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        return httpc.request(self.port, method, path, headers, body, timeout)

    def get(self, path="/", **kw):
        return self.request("GET", path, **kw)


def run_launcher(args, env, cwd, timeout=20):
    """Runs the launcher to completion (for `render` and refused configurations).

    Returns (returncode, stdout, stderr); a launcher still running after
    timeout seconds is killed with its whole process group and reported as
    returncode None.
    """
    proc = subprocess.Popen(
        [str(launcher_bin()), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        known = descendants(proc.pid)
        for pid in known:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return None, out.decode(errors="replace"), err.decode(errors="replace")
