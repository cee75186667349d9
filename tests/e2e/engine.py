"""A model engine stand-in on 127.0.0.1 that speaks Ollama's and OpenAI's wire formats.

Routes:

- POST /api/chat, /api/generate: Ollama. Streams NDJSON
  (``application/x-ndjson``, one JSON object per line, the last one with
  ``done: true`` and the token counts) unless the body says ``stream: false``,
  in which case it answers one JSON object.
- POST /v1/chat/completions, /v1/completions: OpenAI. With ``stream: true``,
  server-sent events (``text/event-stream``): ``data: {...}`` frames carrying
  ``choices[0].delta.content`` (chat) or ``choices[0].text`` (completions), a
  frame with the finish reason, then ``data: [DONE]``. As OpenAI documents
  ``stream_options.include_usage`` (API reference, Chat Completions, "Create
  chat completion": stream_options), usage is streamed only when the request
  sets it to true: then one more frame before ``data: [DONE]`` has
  ``choices: []`` and the ``usage`` object, and every other frame carries
  ``"usage": null``; without it no frame has a ``usage`` member. Otherwise one
  JSON object, with ``usage``.

A path that ends with one of these routes (``/open/api/chat``) is served as
that route; anything else is answered 404.

Streamed bodies go out with chunked transfer encoding, one HTTP chunk per
frame, so each frame leaves the engine as its own write.

Knobs, settable on the instance (also while it runs):

- reply: the reply text; None derives it from the prompt (reply_for()).
- chunks: how many pieces the reply text is cut into when streaming.
- pause: seconds between two streamed frames.
- tokens: (prompt tokens, reply tokens) to report; None derives them.
- report_usage: False makes an engine that reports no token counts at all
  (no ``usage`` in any OpenAI answer, no ``prompt_eval_count`` /
  ``eval_count`` in Ollama's), whatever the request asks.
- model: the model named in replies; None repeats the request's.
- hold(replies=1): the next streamed reply (or the next ``replies`` of them)
  waits before its last frame until release() (or gate_timeout seconds);
  ``first_sent`` is set once every held reply has written its first frames.
- fail(status, times=None): answer errors instead of replies.
- script(frames, content_type): the next replies are these raw byte frames,
  verbatim, ``pause`` apart (e.g. a UTF-8 character split across frames).

Every request is recorded (``requests``: method, path, headers, body) and
every answer (``answers``: what the engine sends, byte for byte, its text and
the token counts it reported, None when it reported none), the answer before
its first byte leaves, so a client that has read a reply always finds it
recorded.
"""

import json
import threading
import time

from netutil import HOST, free_port, QuietHandler, Restartable
from upstream import Recorded

OLLAMA_ROUTES = ("/api/chat", "/api/generate")
OPENAI_ROUTES = ("/v1/chat/completions", "/v1/completions")
CREATED = 1_750_000_000


def reply_for(prompt):
    """The default reply text for a prompt."""
    return f"You said: {prompt}. That is all."


def split_text(text, n):
    """text in n pieces of nearly equal length (by character), none empty
    unless text is shorter than n."""
    n = max(1, min(n, len(text))) if text else 1
    size, extra = divmod(len(text), n)
    pieces, pos = [], 0
    for i in range(n):
        end = pos + size + (1 if i < extra else 0)
        pieces.append(text[pos:end])
        pos = end
    return pieces


def wants_usage(request):
    """True when an OpenAI request asks for usage in its stream."""
    options = request.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def usage_of(tokens):
    return {"prompt_tokens": tokens[0], "completion_tokens": tokens[1],
            "total_tokens": tokens[0] + tokens[1]}


def count_words(text):
    return max(1, len(text.split()))


class _Hold:
    """The gate a hold() puts before the last frame of the next `replies`
    streamed replies; `reached` is set once all of them wait at it."""

    def __init__(self, replies):
        self.gate = threading.Event()
        self.reached = threading.Event()
        self.untaken = replies
        self._replies = replies
        self._waiting = 0
        self._lock = threading.Lock()

    def wait(self, timeout):
        with self._lock:
            self._waiting += 1
            if self._waiting == self._replies:
                self.reached.set()
        self.gate.wait(timeout)


class Answer:
    """One answer the engine sent: body is every byte of the response body."""

    def __init__(self, path, status, content_type, prompt, text, tokens, body):
        self.path = path
        self.status = status
        self.content_type = content_type
        self.prompt = prompt
        self.text = text
        self.tokens = tokens
        self.body = body

    def __repr__(self):
        return f"<{self.status} {self.path} {self.text!r}>"


def prompt_of(path, body):
    """The text a request asks about: the last user message, or the prompt."""
    if not isinstance(body, dict):
        return ""
    if path in ("/api/chat", "/v1/chat/completions"):
        for message in reversed(body.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    return "\n".join(
                        p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                    )
                return content if isinstance(content, str) else ""
        return ""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return "\n".join(p for p in prompt if isinstance(p, str))
    return prompt if isinstance(prompt, str) else ""


class _Handler(QuietHandler):
    server_version = "test-engine"

    def _handle(self):
        raw = self.read_body()
        path = self.path.split("?", 1)[0]
        self.server.owner._record(Recorded(self.command, self.path, list(self.headers.items()), raw))
        self.server.owner._serve(self, path, raw)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    # -- writing ------------------------------------------------------------

    def whole(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def stream(self, content_type, frames, pause, hold, gate_timeout):
        """Sends frames as separate HTTP chunks; held, waits at the gate before
        the last one."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.flush()
        for i, frame in enumerate(frames):
            last = i == len(frames) - 1
            if last and hold is not None:
                hold.wait(gate_timeout)
            elif i > 0 and pause:
                time.sleep(pause)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Engine(Restartable):
    """The model engine on http://127.0.0.1:PORT (``url``)."""

    handler = _Handler

    def __init__(self, reply=None, chunks=4, pause=0.0, tokens=None, model=None, port=None,
                 report_usage=True):
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.reply = reply
        self.chunks = chunks
        self.pause = pause
        self.tokens = tokens
        self.model = model
        self.report_usage = report_usage
        self.gate_timeout = 10.0
        self.first_sent = threading.Event()
        self._hold = None  # handed to the next streamed replies
        self._gates = []  # every gate handed out and not yet released
        self._fail = None  # (status, remaining or None)
        self._script = None  # (frames, content_type)
        self._lock = threading.Lock()
        self._requests = []
        self._answers = []

    # -- controls -------------------------------------------------------------

    def hold(self, replies=1):
        """The next `replies` streamed replies wait before their last frame
        until release(); returns the gate."""
        with self._lock:
            self._hold = _Hold(replies)
            self.first_sent = self._hold.reached
            self._gates.append(self._hold.gate)
        return self._hold.gate

    def release(self):
        """Lets every held reply finish; a hold() not yet taken is cancelled."""
        with self._lock:
            gates, self._gates, self._hold = self._gates, [], None
        for gate in gates:
            gate.set()

    def fail(self, status=500, times=None):
        """Answers status with an error object: always, or the next `times` requests."""
        with self._lock:
            self._fail = (status, times)

    def recover(self):
        with self._lock:
            self._fail = None

    def script(self, frames, content_type="application/x-ndjson"):
        """The next replies are exactly these byte frames (until unscript())."""
        with self._lock:
            self._script = ([bytes(f) for f in frames], content_type)

    def unscript(self):
        with self._lock:
            self._script = None

    def reset(self):
        """Default knobs, no gate, no failure, no script, empty records."""
        self.release()
        with self._lock:
            self.reply = None
            self.chunks = 4
            self.pause = 0.0
            self.tokens = None
            self.model = None
            self.report_usage = True
            self._fail = None
            self._script = None
            self._requests.clear()
            self._answers.clear()

    # -- records ------------------------------------------------------------------

    def _record(self, rec):
        with self._lock:
            self._requests.append(rec)

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    @property
    def answers(self):
        with self._lock:
            return list(self._answers)

    def clear(self):
        with self._lock:
            self._requests.clear()
            self._answers.clear()

    def last(self):
        answers = self.answers
        assert answers, "the engine answered nothing"
        return answers[-1]

    # -- answering --------------------------------------------------------------------

    def _take_failure(self):
        with self._lock:
            if self._fail is None:
                return None
            status, times = self._fail
            if times is not None:
                times -= 1
                self._fail = (status, times) if times > 0 else None
            return status

    def _answered(self, answer):
        with self._lock:
            self._answers.append(answer)

    def _serve(self, handler, path, raw):
        path = next((r for r in OLLAMA_ROUTES + OPENAI_ROUTES if path.endswith(r)), path)
        if handler.command != "POST" or path not in OLLAMA_ROUTES + OPENAI_ROUTES:
            body = json.dumps({"error": f"no route {handler.command} {path}"}).encode()
            handler.whole(404, "application/json", body)
            return
        try:
            request = json.loads(raw)
        except ValueError:
            request = None
        status = self._take_failure()
        if status is not None:
            body = json.dumps({"error": f"engine failure {status}"}).encode()
            self._answered(Answer(path, status, "application/json", prompt_of(path, request), "", None, body))
            handler.whole(status, "application/json", body)
            return
        if not isinstance(request, dict):
            body = json.dumps({"error": "request body is not a JSON object"}).encode()
            self._answered(Answer(path, 400, "application/json", "", "", None, body))
            handler.whole(400, "application/json", body)
            return

        prompt = prompt_of(path, request)
        with self._lock:
            reply, chunks, pause, tokens = self.reply, self.chunks, self.pause, self.tokens
            report = self.report_usage
            model = self.model or request.get("model") or "stand-in"
            script = self._script
            hold = self._hold
            if hold is not None:
                hold.untaken -= 1
                if hold.untaken == 0:
                    self._hold = None
        text = reply_for(prompt) if reply is None else reply
        tokens = tokens or (count_words(prompt), max(1, chunks))

        if script is not None:
            frames, content_type = script
            self._answered(Answer(path, 200, content_type, prompt, None, None, b"".join(frames)))
            handler.stream(content_type, frames, pause, hold, self.gate_timeout)
            return

        ollama = path in OLLAMA_ROUTES
        streaming = request.get("stream", ollama) is not False if ollama else request.get("stream") is True
        if not report:
            tokens = None
        if ollama:
            frames = self._ollama(path, model, text, chunks, tokens)
            content_type = "application/x-ndjson"
        else:
            if streaming and not wants_usage(request):
                tokens = None
            frames = self._openai(path, model, text, chunks, tokens)
            content_type = "text/event-stream"
        if streaming:
            self._answered(Answer(path, 200, content_type, prompt, text, tokens, b"".join(frames)))
            handler.stream(content_type, frames, pause, hold, self.gate_timeout)
        else:
            body = self._whole_reply(path, model, text, tokens)
            self._answered(Answer(path, 200, "application/json", prompt, text, tokens, body))
            handler.whole(200, "application/json", body)

    @staticmethod
    def _ollama(path, model, text, chunks, tokens):
        def frame(piece, done):
            obj = {"model": model, "created_at": "2025-06-15T12:00:00Z"}
            if path == "/api/chat":
                obj["message"] = {"role": "assistant", "content": piece}
            else:
                obj["response"] = piece
            obj["done"] = done
            if done:
                obj["done_reason"] = "stop"
                if tokens is not None:
                    obj.update(prompt_eval_count=tokens[0], eval_count=tokens[1])
            return json.dumps(obj, ensure_ascii=False).encode() + b"\n"

        return [frame(p, False) for p in split_text(text, chunks)] + [frame("", True)]

    @staticmethod
    def _openai(path, model, text, chunks, tokens):
        """The event stream; with tokens (the stream asked for usage and the
        engine reports it) every frame has a usage member, null but in the
        usage frame; tokens None streams no usage member at all."""
        chat = path == "/v1/chat/completions"
        base = {
            "id": "cmpl-standin",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": CREATED,
            "model": model,
        }

        def frame(obj):
            if tokens is not None and "usage" not in obj:
                obj["usage"] = None
            return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"

        def choice(piece, finish):
            if chat:
                delta = {"content": piece} if piece is not None else {}
                return {"index": 0, "delta": delta, "finish_reason": finish}
            return {"index": 0, "text": piece or "", "finish_reason": finish}

        frames = []
        for i, piece in enumerate(split_text(text, chunks)):
            c = choice(piece, None)
            if chat and i == 0:
                c["delta"]["role"] = "assistant"
            frames.append(frame(dict(base, choices=[c])))
        frames.append(frame(dict(base, choices=[choice(None, "stop")])))
        if tokens is not None:
            frames.append(frame(dict(base, choices=[], usage=usage_of(tokens))))
        frames.append(b"data: [DONE]\n\n")
        return frames

    @staticmethod
    def _whole_reply(path, model, text, tokens):
        if path in OLLAMA_ROUTES:
            obj = {"model": model, "created_at": "2025-06-15T12:00:00Z"}
            if path == "/api/chat":
                obj["message"] = {"role": "assistant", "content": text}
            else:
                obj["response"] = text
            obj.update(done=True, done_reason="stop")
            if tokens is not None:
                obj.update(prompt_eval_count=tokens[0], eval_count=tokens[1])
        else:
            chat = path == "/v1/chat/completions"
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                if chat
                else {"index": 0, "text": text, "finish_reason": "stop"}
            )
            obj = {"id": "cmpl-standin", "object": "chat.completion" if chat else "text_completion",
                   "created": CREATED, "model": model, "choices": [choice]}
            if tokens is not None:
                obj["usage"] = usage_of(tokens)
        return json.dumps(obj, ensure_ascii=False).encode()

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self):
        self.release()
        super().stop()
