"""Runs wrk against one URL (optionally with a Lua script) and parses its `--latency` report."""

import re
import shutil
import subprocess
from dataclasses import dataclass

_UNIT_US = {"us": 1.0, "ms": 1_000.0, "s": 1_000_000.0, "m": 60_000_000.0}


@dataclass
class Load:
    threads: int
    connections: int
    duration_s: int

    def args(self, duration_s=None):
        d = self.duration_s if duration_s is None else duration_s
        return ["-t", str(self.threads), "-c", str(self.connections), "-d", f"{int(d)}s", "--latency"]

    def describe(self):
        return f"wrk -t{self.threads} -c{self.connections} -d{self.duration_s}s --latency"


@dataclass
class Result:
    rps: float
    p50_us: float
    p99_us: float
    requests: int
    non_2xx: int
    socket_errors: int
    output: str
    refused: int = 0  # responses the script's `accept` turned down

    def problems(self):
        out = []
        if self.non_2xx:
            out.append(f"{self.non_2xx} of {self.requests} responses were not 2xx/3xx")
        if self.socket_errors:
            out.append(f"{self.socket_errors} socket errors")
        if self.refused:
            out.append(f"{self.refused} of {self.requests} responses refused by the script's check")
        return out


def binary():
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk not found on PATH (apt-get install -y wrk)")
    return found


def _us(value, unit):
    return float(value) * _UNIT_US[unit]


def parse(output):
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\b", output, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\b", output, re.M)
    total = re.search(r"^\s+(\d+) requests in ", output, re.M)
    if not (rps and p50 and p99 and total):
        raise ValueError(f"unrecognised wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    refused = re.search(r"^Refused responses: (\d+)$", output, re.M)
    return Result(
        rps=float(rps.group(1)),
        p50_us=_us(*p50.groups()),
        p99_us=_us(*p99.groups()),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        output=output,
        refused=int(refused.group(1)) if refused else 0,
    )


def run(url, load, headers=(), duration_s=None, script=None, script_args=()):
    """One wrk run; `script` is a Lua file (wrk's `-s`), `script_args` reach
    its `init(args)`."""
    cmd = [binary(), *load.args(duration_s)]
    for h in headers:
        cmd += ["-H", h]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    limit = (load.duration_s if duration_s is None else duration_s) + 30
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse(done.stdout)


_NUMBERED_POST = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

local prefix, counter = "", 0
function init(args)
  prefix = (args[1] or "run") .. "-" .. tostring(thread_number or 0)
end

wrk.method = "POST"
local body = %s

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format(body, %s))
end
"""


# Each thread counts the responses `accept` turns down; when wrk is done,
# the main state adds up every thread's count after wrk's own report.
_CHECKED = r"""
%s

refused = 0
function response(status, headers, body)
  if not accept(status, headers, body) then
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("refused")
  end
  io.write(string.format("Refused responses: %%d\n", total))
end
"""


def numbered_post_script(body, args, accept=None):
    """A wrk Lua script that POSTs `body`, a Lua `string.format` template,
    filled with `args`, a Lua expression list over `prefix` ("<run label>-<wrk
    thread>", the label coming from wrk's `-- ARGS`) and `counter` (the
    request's number in its thread): every request is distinct.

    `accept`, when given, is the Lua source of `function accept(status,
    headers, body)`: wrk's status codes say nothing of what a 200 holds, so
    every response is judged by it, and those it turns down are counted in
    `Result.refused`."""
    script = _NUMBERED_POST % (body, args)
    return script if accept is None else script + _CHECKED % accept
