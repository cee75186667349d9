"""The engine stand-in (engine.py) itself, against the wire formats it
stands in for: what the budget tests charge is only as right as what the
stand-in reports.

OpenAI (API reference, Chat Completions, stream_options.include_usage): a
stream carries usage only when the request sets include_usage, as one more
chunk before `data: [DONE]` whose `choices` is empty, and then every other
chunk has `"usage": null`. Ollama (API docs, "Generate a chat completion"):
the final object of a stream, or the one object of `stream: false`, has
`done: true`, `prompt_eval_count` and `eval_count`.
"""

import json

import pytest

import httpc
from budgets import body_for, sse_data
from engine import Engine

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def engine():
    with Engine(tokens=(7, 9)) as e:
        yield e


def ask(engine, path, body):
    r = httpc.request(engine.port, "POST", path, JSON, json.dumps(body).encode())
    assert r.status == 200, r
    return r


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_an_openai_stream_carries_usage_only_when_asked(engine, path):
    engine.report_usage = True
    plain = [json.loads(e) for e in sse_data(ask(engine, path, body_for(path, "hi", stream=True)).body)[:-1]]
    assert plain and all("usage" not in c for c in plain), plain
    assert engine.last().tokens is None
    for usage in (False, None):
        body = body_for(path, "hi", stream=True, usage=usage)
        assert b"usage" not in ask(engine, path, body).body

    events = sse_data(ask(engine, path, body_for(path, "hi", stream=True, usage=True)).body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    *content, last = chunks
    assert last["choices"] == [] and last["usage"] == {"prompt_tokens": 7, "completion_tokens": 9,
                                                       "total_tokens": 16}, last
    assert all("usage" in c and c["usage"] is None for c in content), content
    assert [c["choices"][0]["finish_reason"] for c in content][-1] == "stop"
    # The same stream but for the usage: a client that did not ask gets
    # exactly these chunks without the usage members.
    assert [{k: v for k, v in c.items() if k != "usage"} for c in content] == plain
    assert engine.last().tokens == (7, 9)


def test_an_engine_that_reports_nothing_has_no_counts_in_any_framing(engine):
    engine.report_usage = False
    try:
        for path, stream, usage in (("/v1/chat/completions", True, True), ("/v1/chat/completions", False, None),
                                    ("/api/chat", None, None), ("/api/generate", False, None)):
            raw = ask(engine, path, body_for(path, "hi", stream=stream, usage=usage)).body
            for word in (b"usage", b"prompt_eval_count", b"eval_count", b"_tokens"):
                assert word not in raw, (path, raw)
            assert engine.last().tokens is None
    finally:
        engine.report_usage = True


def test_ollama_reports_its_counts_on_the_final_object(engine):
    lines = [json.loads(x) for x in ask(engine, "/api/chat", body_for("/api/chat", "hi")).body.splitlines()]
    assert [x["done"] for x in lines] == [False] * (len(lines) - 1) + [True]
    assert (lines[-1]["prompt_eval_count"], lines[-1]["eval_count"]) == (7, 9)
    assert all("eval_count" not in x for x in lines[:-1])
    whole = ask(engine, "/api/generate", body_for("/api/generate", "hi", stream=False)).json()
    assert whole["done"] is True and (whole["prompt_eval_count"], whole["eval_count"]) == (7, 9)
    body = body_for("/v1/chat/completions", "hi")
    assert ask(engine, "/v1/chat/completions", body).json()["usage"]["total_tokens"] == 16
