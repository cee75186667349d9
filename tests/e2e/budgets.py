"""Helpers of the token budget tests (test_budgets*.py): request bodies, the
documented reservation estimate, the rate-limit headers, and readings of a
user's budget through the gateway (GET /usage, a probe the budget refuses).

The estimate is the one the README documents for a reservation: input is
ceil(text bytes / 4) plus 4 tokens per message (OpenAI and Ollama chat
messages; Ollama's prompt and system and OpenAI's prompts, one message
each); output is max_completion_tokens, else max_tokens (OpenAI), or
options.num_predict (Ollama; a negative one means unlimited), else the
configured default_max_tokens. A reply whose engine reports no usage is
charged its text's ceil(bytes / 4) on top of the input estimate.
"""

import json
import re
import time

LIMIT_HEADER = "x-ratelimit-limit-tokens"
REMAINING_HEADER = "x-ratelimit-remaining-tokens"
RESET_HEADER = "x-ratelimit-reset-tokens"
RATE_HEADERS = (LIMIT_HEADER, REMAINING_HEADER, RESET_HEADER)
# OpenAI's duration form of x-ratelimit-reset-tokens: 250ms, 6s, 1m30s, 2h0m0s.
RESET_FORM = re.compile(r"\d+ms|(?:\d+h)?(?:\d+m)?\d+s")
TOKENS_PER_MESSAGE = 4
BYTES_PER_TOKEN = 4
# An output allowance no window of these tests can ever hold: the probe's
# reservation is refused outright, so it charges nothing and only reads.
NEVER_FITS = 10**9
OLLAMA = ("/api/chat", "/api/generate")
CHAT = ("/api/chat", "/v1/chat/completions")


def text_tokens(n_bytes):
    """ceil(bytes / 4)."""
    return -(-n_bytes // BYTES_PER_TOKEN)


def body_for(path, prompt, *, model="llama3.2", stream=None, max_tokens=None, usage=None,
             system=None):
    """A request for path with one user message (chat) or one prompt; an
    Ollama limit goes into options.num_predict, an OpenAI one into max_tokens;
    usage=True/False sets stream_options.include_usage."""
    if path in CHAT:
        messages = [{"role": "system", "content": system}] if system is not None else []
        body = {"model": model, "messages": messages + [{"role": "user", "content": prompt}]}
    else:
        body = {"model": model, "prompt": prompt}
        if system is not None:
            body["system"] = system
    if stream is not None:
        body["stream"] = stream
    if max_tokens is not None:
        if path in OLLAMA:
            body["options"] = {"num_predict": max_tokens}
        else:
            body["max_tokens"] = max_tokens
    if usage is not None:
        body["stream_options"] = {"include_usage": usage}
    return body


def input_estimate(body):
    """The documented input estimate of a body built by body_for()."""
    if "messages" in body:
        texts = [m.get("content") or "" for m in body["messages"]]
    else:
        prompts = body.get("prompt")
        texts = prompts if isinstance(prompts, list) else [prompts or ""]
        if "system" in body:
            texts = [body["system"]] + texts
    n_bytes = sum(len(t.encode()) for t in texts)
    return text_tokens(n_bytes) + TOKENS_PER_MESSAGE * len(texts)


def output_estimate(path, body, default_max_tokens):
    if path in OLLAMA:
        n = (body.get("options") or {}).get("num_predict")
        return n if isinstance(n, int) and n >= 0 else default_max_tokens
    for field in ("max_completion_tokens", "max_tokens"):
        if isinstance(body.get(field), int):
            return body[field]
    return default_max_tokens


def reservation(path, body, default_max_tokens):
    return input_estimate(body) + output_estimate(path, body, default_max_tokens)


def reply_text(path, raw):
    """The text of a reply as a client reads it, in any of the framings."""
    raw = raw.decode() if isinstance(raw, bytes) else raw
    if path in OLLAMA:
        objs = [json.loads(line) for line in raw.splitlines() if line.strip()]
        if path == "/api/chat":
            return "".join((o.get("message") or {}).get("content", "") for o in objs)
        return "".join(o.get("response", "") for o in objs)
    if raw.startswith("data:"):
        out = []
        for event in sse_data(raw):
            if event == "[DONE]":
                continue
            for c in json.loads(event).get("choices") or []:
                out.append((c.get("delta") or {}).get("content") or c.get("text") or "")
        return "".join(out)
    choice = json.loads(raw)["choices"][0]
    return choice["message"]["content"] if "message" in choice else choice["text"]


def sse_data(raw):
    """The data fields of an event stream, one per event."""
    raw = raw.decode() if isinstance(raw, bytes) else raw
    return [line[len("data:"):].strip() for line in raw.split("\n") if line.startswith("data:")]


def call(s, sub, path, body, timeout=20, token=None, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return s.request("POST", path, headers=h, body=data, token=token or s.token(sub=sub),
                     timeout=timeout)


def rate_headers(resp):
    """{limit, remaining, reset} of a response; each must be there and well formed."""
    missing = [h for h in RATE_HEADERS if resp.header(h) is None]
    assert not missing, f"rate-limit headers missing {missing}: {resp!r} {resp.headers!r}"
    limit, remaining, reset = (resp.header(h) for h in RATE_HEADERS)
    assert limit.isdigit() and remaining.isdigit(), resp.headers
    assert RESET_FORM.fullmatch(reset), f"{RESET_HEADER}: {reset!r} is not OpenAI's duration form"
    return {"limit": int(limit), "remaining": int(remaining), "reset": reset}


def reset_ms(text):
    """Milliseconds of a duration in OpenAI's form."""
    if text.endswith("ms"):
        return int(text[:-2])
    total = 0
    for n, unit in re.findall(r"(\d+)([hms])", text):
        total += int(n) * {"h": 3_600_000, "m": 60_000, "s": 1_000}[unit]
    return total


def probe(s, sub, path="/api/chat", model="llama3.2"):
    """A request whose reservation no window can hold: the budget refuses it
    before the engine, charges nothing, and its headers say how the user's
    most constraining limit stands now."""
    r = call(s, sub, path, body_for(path, "probe", model=model, max_tokens=NEVER_FITS))
    assert r.status in (429, 403), r
    return r


def usage_of(s, sub, token=None, query=""):
    r = s.request("GET", "/usage" + query, token=token or s.token(sub=sub))
    assert r.status == 200, r
    return r.json()


def limit_entry(usage, seconds, scope="*"):
    found = [x for x in usage.get("limits", []) if x.get("scope") == scope and x.get("seconds") == seconds]
    assert len(found) == 1, f"no single {scope} limit of {seconds} s in {usage!r}"
    return found[0]


def window_entry(usage, seconds):
    found = [w for w in usage.get("windows", []) if w.get("seconds") == seconds]
    assert len(found) == 1, f"no single window of {seconds} s in {usage!r}"
    return found[0]


def wait_usage(s, sub, done, timeout=10, token=None, query=""):
    """Polls GET /usage (its figures are as of the last sync) until done(usage);
    returns the last reading."""
    deadline = time.monotonic() + timeout
    while True:
        usage = usage_of(s, sub, token=token, query=query)
        if done(usage) or time.monotonic() > deadline:
            return usage
        time.sleep(0.1)


def used_is(seconds, tokens):
    """A wait_usage() condition: the user's * limit of `seconds` has used `tokens`."""
    def done(usage):
        try:
            return limit_entry(usage, seconds)["used"] == tokens
        except AssertionError:
            return False
    return done


def check_refusal(r, status=429, retry=True):
    """A budget's refusal: OpenAI's error object, the rate-limit headers and
    (when it can ever fit) Retry-After in delay-seconds (RFC 9110 §10.2.3)."""
    assert r.status == status, r
    assert (r.header("content-type") or "").startswith("application/json"), r.headers
    error = r.json().get("error")
    assert isinstance(error, dict), r.json()
    assert error.get("type") == "tokens" and error.get("code") == "rate_limit_exceeded", error
    assert isinstance(error.get("message"), str) and error["message"], error
    retry_after = r.header("retry-after")
    if retry:
        assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, r.headers
    else:
        assert retry_after is None, f"a request that can never fit got Retry-After {retry_after}"
    return rate_headers(r), (int(retry_after) if retry_after else None)


def budget_stats(gw):
    """{(kind, name, counter): value} of the budget's counters in Envoy's
    admin /stats: kind "route" (attach_budget.{route}.…), "model"
    (attach_budget.model.{model}.…) or "user"."""
    r = gw.admin("GET", "/stats?filter=attach_budget")
    assert r.status == 200, r
    found = {}
    for line in r.text.splitlines():
        m = re.match(r"^(?:wasmcustom\.)?attach_budget\.(?:(model|user)\.)?(.+)\."
                     r"(admitted|refused|tokens_in|tokens_out): (\d+)$", line.strip())
        if m:
            found[(m.group(1) or "route", m.group(2), m.group(3))] = int(m.group(4))
    return found


def prometheus(text):
    """[(name, {label: value}, value)] of a Prometheus text exposition."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric(samples, name, **labels):
    """The sum of name's samples whose labels include `labels`."""
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items()))
