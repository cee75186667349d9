"""The VM-wide budget for mirrored replies, under a burst.

Every reply the filter mirrors draws from one budget per worker
(`memory.reply_budget_bytes`, small here). Many long streaming replies at
once need more than it holds: every client must still get its whole reply,
the gateway must keep serving, the replies past the budget are mirrored cut
and flagged `truncated` (and counted), and once the burst is over the budget
is whole again.
"""

import json

from engine import Engine
from httpc import unique
from test_memory_mirror import (
    CONFIG,
    counters,
    model_body,
    open_stream,
    the_pair,
    wait_counter,
    wait_events,
)

BUDGET = 64 * 1024
# Each reply: FRAMES lines of FRAME_TEXT bytes of text, then the last line.
FRAMES, FRAME_TEXT = 16, 1000
REPLIES = 12
CUT_COUNTER = "attach_memory_replies_truncated"


def reply_text(frames, tag):
    """frames pieces of FRAME_TEXT bytes each (the engine splits it evenly)."""
    return "".join(f"{tag}{i:04d}".ljust(FRAME_TEXT, ".") for i in range(frames))


def read_lines(resp, n):
    """Reads a streaming response, as bytes arrive, until n lines are in."""
    got = b""
    while got.count(b"\n") < n:
        piece = resp.read1(65536)
        if not piece:
            break
        got += piece
    return got


def test_a_burst_of_long_replies_is_passed_whole_and_mirrored_within_the_budget(make_stack):
    config = dict(CONFIG, memory=dict(CONFIG["memory"], reply_budget_bytes=BUDGET))
    with Engine() as engine:
        # One worker, so one VM and one budget for the whole burst.
        s = make_stack(a2a=True, upstream=engine, config=config,
                       env={"MEM_BACKEND": "service"}, concurrency=1)
        before = counters(s.gateway)[CUT_COUNTER]
        text = reply_text(FRAMES, "burst")
        engine.reply, engine.chunks = text, FRAMES
        engine.hold(replies=REPLIES)
        subs = [unique("burst") for _ in range(REPLIES)]
        streams, got = [], []
        try:
            for sub in subs:
                body = model_body("/api/chat", f"long answer for {sub}")
                streams.append(open_stream(s, sub, "/api/chat", body))
            assert engine.first_sent.wait(10), "not every reply reached its last line"
            # Every text line has passed the filter: the burst holds them all at once.
            for _, resp in streams:
                assert resp.status == 200
                got.append(read_lines(resp, FRAMES))
            assert all(g.count(b"\n") == FRAMES for g in got), [len(g) for g in got]
            engine.release()
            got = [g + resp.read() for g, (_, resp) in zip(got, streams)]
        finally:
            engine.release()
            for conn, _ in streams:
                conn.close()

        answers = engine.answers
        assert len(answers) == REPLIES and len({a.body for a in answers}) == 1
        assert got == [answers[0].body] * REPLIES, "a client got other bytes than the engine sent"

        replies = [the_pair(wait_events(s, sub, 2))["reply"] for sub in subs]
        cut = [r for r in replies if r["truncated"]]
        for r in replies:
            assert r["status"] == 200, r
            if r["truncated"]:
                assert text.startswith(r["content"]), r["content"][-40:]
            else:
                assert r["content"] == text, r["content"][-40:]
        # Past the budget no reply can be whole.
        assert len(cut) >= REPLIES - BUDGET // len(text), [len(r["content"]) for r in replies]
        assert sum(len(r["content"]) for r in replies) <= BUDGET
        assert wait_counter(s.gateway, CUT_COUNTER, before + len(cut)) == before + len(cut)

        # The burst gave all of it back: a reply nearly as large as the
        # budget is mirrored whole, and the gateway still serves.
        sub = unique("after")
        late = reply_text(BUDGET // FRAME_TEXT - 4, "late")
        engine.reply, engine.chunks = late, len(late) // FRAME_TEXT
        conn, resp = open_stream(s, sub, "/api/chat", model_body("/api/chat", "one more"))
        try:
            assert resp.status == 200
            body = resp.read()
        finally:
            conn.close()
        assert body == engine.last().body
        assert "".join(json.loads(line)["message"]["content"] for line in body.splitlines()) == late
        reply = the_pair(wait_events(s, sub, 2))["reply"]
        assert (reply["content"] == late, reply["truncated"]) == (True, False)
        assert counters(s.gateway)[CUT_COUNTER] == before + len(cut)
