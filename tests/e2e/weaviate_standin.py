"""A Weaviate stand-in on 127.0.0.1, held to Weaviate's published OpenAPI contract.

Every request body is validated against the contract (weaviate_contract.py)
before anything else; a body that does not match is refused the way Weaviate
refuses it (422 with ``{"error": [{"message": ...}]}``) and recorded in
``violations``. On top of the contract the stand-in applies the server-side
rules Weaviate enforces for what it implements: class and property names,
known data types, per-data-type index options, and, with auto-schema off,
object properties that must be declared in the class with values of the
declared data type.

Endpoints (base path /v1):

- GET  /.well-known/ready, /.well-known/live   200, no body, no auth needed
- GET  /meta                                   Meta
- GET  /schema                                 Schema {"classes": [...]}
- GET  /schema/{className}                     Class, or 404
- POST /schema                                 body Class; 200 with the stored class
- POST /schema/{className}/properties          body Property; 200 with the property as
                                                sent, stored with Weaviate's defaults;
                                                422 for a missing class or a name the
                                                class already has
- POST /batch/objects                          body BatchObjects; 200 with one
                                                ObjectsGetResponse per object
- POST /graphql                                body GraphQLQuery; the Get subset
                                                described in run_graphql()

Anything else is answered 404 and recorded in ``unsupported``.

Controls, callable from tests while the server runs: fail()/recover(),
stall(), down()/up(), fail_objects(), and the api_key attribute.
"""

import base64
import binascii
import copy
import json
import math
import re
import threading
import time
import uuid
from urllib.parse import unquote

import weaviate_contract
from netutil import HOST, QuietHandler, Restartable, free_port, wait_until
from upstream import Recorded
from weaviate_contract import is_rfc3339, is_uuid, parse_rfc3339

BASE_PATH = "/v1"

# Data types Weaviate knows for a property (besides references to classes).
SCALAR_TYPES = ("text", "int", "number", "boolean", "date", "uuid")
PRIMITIVE_TYPES = frozenset(
    SCALAR_TYPES
    + tuple(t + "[]" for t in SCALAR_TYPES)
    + ("blob", "geoCoordinates", "phoneNumber", "object", "object[]")
)
# Accepted by Weaviate and stored as their replacement.
DEPRECATED_TYPES = {"string": "text", "string[]": "text[]"}
TEXT_TYPES = frozenset({"text", "text[]"})
RANGE_TYPES = frozenset({"int", "number", "date"})
OBJECT_TYPES = frozenset({"object", "object[]"})
RESERVED_PROPERTY_NAMES = frozenset({"_additional", "_id", "id"})
CLASS_NAME = re.compile(r"^[A-Z][_0-9A-Za-z]{0,254}$")
PROPERTY_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,230}$")
# Tokenizations whose Equal-filter semantics the stand-in reproduces.
FILTER_TOKENIZATIONS = frozenset({"word", "lowercase", "whitespace", "field"})

_GO_TYPES = {
    str: "string",
    bool: "bool",
    int: "json.Number",
    float: "json.Number",
    list: "[]interface {}",
    dict: "map[string]interface {}",
    type(None): "nil",
}


def error_body(*messages):
    """Weaviate's ErrorResponse: {"error": [{"message": ...}, ...]}."""
    return {"error": [{"message": m} for m in messages]}


def _capitalize(name):
    return name[:1].upper() + name[1:] if isinstance(name, str) else name


def _now_ms():
    return int(time.time() * 1000)


def canonical_id(value):
    """The lower-case, hyphenated form of a UUID string (as Weaviate returns ids)."""
    return str(uuid.UUID(value))


def tokenize(text, tokenization):
    """Splits text the way Weaviate's inverted index does for the given tokenization."""
    if tokenization == "word":
        return re.findall(r"[^\W_]+", text.lower())
    if tokenization == "lowercase":
        return text.lower().split()
    if tokenization == "whitespace":
        return text.split()
    if tokenization == "field":
        stripped = text.strip()
        return [stripped] if stripped else []
    raise ValueError(f"tokenization {tokenization!r}")


class Request(Recorded):
    """One request as the stand-in saw it: body is the parsed JSON (None when
    absent or not JSON), raw the bytes, status the answer's status code."""

    def __init__(self, method, path, query, headers, raw):
        super().__init__(method, path, headers, raw)
        self.raw = raw
        self.query = query
        self.body = None
        self.json_error = None
        self.status = None
        if raw:
            try:
                self.body = json.loads(raw)
            except ValueError as e:
                self.json_error = str(e)

    def __repr__(self):
        return f"<{self.method} {self.path} -> {self.status}>"


class Violation:
    """A request part that breaks the contract (source "contract"), Weaviate's
    server-side rules (source "weaviate") or HTTP framing (source "http")."""

    def __init__(self, method, path, schema, errors, source="contract"):
        self.method = method
        self.path = path
        self.schema = schema
        self.errors = list(errors)
        self.source = source

    def __repr__(self):
        return f"<{self.method} {self.path} {self.source}:{self.schema} {'; '.join(self.errors)}>"

    __str__ = __repr__


class Unsupported:
    """A request the stand-in does not implement (it may be valid for Weaviate)."""

    def __init__(self, method, path, reason, detail=None):
        self.method = method
        self.path = path
        self.reason = reason
        self.detail = detail

    def __repr__(self):
        extra = f" in {self.detail!r}" if self.detail else ""
        return f"<{self.method} {self.path}: {self.reason}{extra}>"

    __str__ = __repr__


class ObjectFailure:
    """One object answered FAILED in a batch reply."""

    def __init__(self, object_id, class_name, message, injected):
        self.id = object_id
        self.class_name = class_name
        self.message = message
        self.injected = injected

    def __repr__(self):
        kind = "injected" if self.injected else "refused"
        return f"<{kind} {self.class_name}/{self.id}: {self.message}>"


class _Problem(Exception):
    """A refused request: status and ErrorResponse messages."""

    def __init__(self, status, *messages):
        super().__init__("; ".join(messages))
        self.status = status
        self.messages = messages


class _FailRule:
    def __init__(self, match, times, message):
        self.match = match
        self.times = times
        self.message = message
        self.used = {}


# -- GraphQL ---------------------------------------------------------------------


class GraphQLError(Exception):
    """A query Weaviate would answer with errors; unsupported marks a query that
    may be valid GraphQL for Weaviate but is outside the stand-in's subset."""

    def __init__(self, message, line=None, column=None, unsupported=False):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.unsupported = unsupported

    def as_json(self):
        out = {"message": self.message}
        if self.line is not None:
            out["locations"] = [{"line": self.line, "column": self.column}]
        return out


def _error_at(node, message):
    """A GraphQL error located at a token, field or value."""
    return GraphQLError(message, node.line, node.column)


def _unsupported(node, message):
    """A GraphQL error for a construct outside the implemented subset."""
    return GraphQLError(message, node.line, node.column, unsupported=True)


_GQL_TOKEN = re.compile(
    r"""
      (?P<ignored>[ \t\r\n,\ufeff]+|\#[^\r\n]*)
    | (?P<spread>\.\.\.)
    | (?P<block>\"\"\")
    | (?P<string>"(?:[^"\\\r\n]|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*")
    | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
    | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
    | (?P<punct>[!$&()\[\]{}:=@|])
    """,
    re.X,
)


class _Token:
    def __init__(self, kind, text, line, column):
        self.kind = kind
        self.text = text
        self.line = line
        self.column = column

    def __repr__(self):
        return "end of query" if self.kind == "eof" else repr(self.text)


def _gql_tokens(source):
    tokens = []
    pos, line, line_start = 0, 1, 0
    while pos < len(source):
        m = _GQL_TOKEN.match(source, pos)
        column = pos - line_start + 1
        if not m:
            if source[pos] == '"':
                raise GraphQLError("Syntax Error: Unterminated string or invalid escape.", line, column)
            raise GraphQLError(f"Syntax Error: Unexpected character {source[pos]!r}.", line, column)
        kind, text = m.lastgroup, m.group()
        if kind == "block":
            raise GraphQLError("block strings are not supported", line, column, unsupported=True)
        if kind == "number" and m.end() < len(source) and re.match(r"[._A-Za-z]", source[m.end()]):
            raise GraphQLError(f"Syntax Error: Invalid number {text + source[m.end()]!r}.", line, column)
        if kind != "ignored":
            tokens.append(_Token(kind, text, line, column))
        for nl in re.finditer(r"\r\n|\r|\n", text):
            line += 1
            line_start = pos + nl.end()
        pos = m.end()
    column = pos - line_start + 1
    tokens.append(_Token("eof", "", line, column))
    return tokens


class _Value:
    """A GraphQL literal: kind is int, float, string, boolean, null, enum, list or object."""

    def __init__(self, kind, value, token):
        self.kind = kind
        self.value = value
        self.line = token.line
        self.column = token.column

    def plain(self):
        if self.kind == "list":
            return [v.plain() for v in self.value]
        if self.kind == "object":
            return {k: v.plain() for k, v in self.value.items()}
        return self.value


class _Field:
    def __init__(self, name, args, selections, token):
        self.name = name
        self.args = args
        self.selections = selections
        self.line = token.line
        self.column = token.column


class _GraphQLParser:
    def __init__(self, source):
        self.tokens = _gql_tokens(source)
        self.i = 0

    def peek(self):
        return self.tokens[self.i]

    def take(self):
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def at(self, text):
        tok = self.peek()
        return tok.kind in ("punct", "spread") and tok.text == text

    def expect(self, text):
        tok = self.take()
        if tok.kind not in ("punct", "spread") or tok.text != text:
            raise _error_at(tok, f"Syntax Error: Expected {text!r}, found {tok!r}.")
        return tok

    def name(self):
        tok = self.take()
        if tok.kind != "name":
            raise _error_at(tok, f"Syntax Error: Expected Name, found {tok!r}.")
        return tok

    def document(self):
        tok = self.peek()
        if tok.kind == "name":
            if tok.text in ("mutation", "subscription", "fragment"):
                raise _unsupported(tok, f"{tok.text} definitions are not supported")
            if tok.text != "query":
                raise _error_at(tok, f"Syntax Error: Unexpected Name {tok.text!r}.")
            self.take()
            if self.peek().kind == "name":
                self.take()
            if self.at("("):
                tok = self.peek()
                raise _unsupported(tok, "variable definitions are not supported")
        selections = self.selection_set()
        tok = self.peek()
        if tok.kind != "eof":
            if tok.kind == "punct" and tok.text == "{" or tok.kind == "name":
                raise _unsupported(tok, "documents with several operations are not supported")
            raise _error_at(tok, f"Syntax Error: Unexpected {tok!r}.")
        return selections

    def selection_set(self):
        self.expect("{")
        selections = []
        while not self.at("}"):
            if self.peek().kind == "eof":
                tok = self.peek()
                raise _error_at(tok, "Syntax Error: Expected Name, found end of query.")
            selections.append(self.selection())
        self.expect("}")
        if not selections:
            tok = self.tokens[self.i - 1]
            raise _error_at(tok, "Syntax Error: Expected Name, found '}'.")
        return selections

    def selection(self):
        tok = self.peek()
        if tok.kind == "spread":
            raise _unsupported(tok, "fragments are not supported")
        name = self.name()
        if self.at(":"):
            raise _unsupported(name, "field aliases are not supported")
        args = self.arguments() if self.at("(") else {}
        if self.at("@"):
            tok = self.peek()
            raise _unsupported(tok, "directives are not supported")
        selections = self.selection_set() if self.at("{") else None
        return _Field(name.text, args, selections, name)

    def arguments(self):
        self.expect("(")
        args = {}
        while not self.at(")"):
            name = self.name()
            self.expect(":")
            if name.text in args:
                raise _error_at(name, f'There can be only one argument named "{name.text}".')
            args[name.text] = self.value()
        close = self.expect(")")
        if not args:
            raise _error_at(close, "Syntax Error: Expected Name, found ')'.")
        return args

    def value(self):
        tok = self.take()
        if tok.kind == "punct" and tok.text == "$":
            raise _unsupported(tok, "variables are not supported")
        if tok.kind == "number":
            if re.fullmatch(r"-?\d+", tok.text):
                return _Value("int", int(tok.text), tok)
            return _Value("float", float(tok.text), tok)
        if tok.kind == "string":
            return _Value("string", json.loads(tok.text, strict=False), tok)
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                return _Value("boolean", tok.text == "true", tok)
            if tok.text == "null":
                return _Value("null", None, tok)
            return _Value("enum", tok.text, tok)
        if tok.kind == "punct" and tok.text == "[":
            items = []
            while not self.at("]"):
                if self.peek().kind == "eof":
                    end = self.peek()
                    raise _error_at(end, "Syntax Error: Expected ']', found end of query.")
                items.append(self.value())
            self.expect("]")
            return _Value("list", items, tok)
        if tok.kind == "punct" and tok.text == "{":
            fields = {}
            while not self.at("}"):
                name = self.name()
                self.expect(":")
                if name.text in fields:
                    raise _error_at(name, f'There can be only one input field named "{name.text}".')
                fields[name.text] = self.value()
            self.expect("}")
            return _Value("object", fields, tok)
        raise _error_at(tok, f"Syntax Error: Unexpected {tok!r}.")


def parse_graphql(source):
    """The top-level selection set of a query document, as _Field objects."""
    return _GraphQLParser(source).document()


def _as_list(value):
    """GraphQL input coercion: a single value where a list is expected is a list of one."""
    return value.value if value.kind == "list" else [value]


def _invalid(value, expected):
    shown = json.dumps(value.plain()) if value.kind != "enum" else value.value
    return _error_at(value, f'Argument has invalid value {shown}. Expected type "{expected}".')


_WHERE_OPERATORS = (
    "And Or Not Equal NotEqual GreaterThan GreaterThanEqual LessThan LessThanEqual "
    "Like WithinGeoRange IsNull ContainsAny ContainsAll ContainsNone"
).split()
_WHERE_VALUES = (
    "valueInt valueNumber valueBoolean valueString valueText valueDate valueIntArray "
    "valueNumberArray valueBooleanArray valueStringArray valueTextArray valueDateArray valueGeoRange"
).split()


# -- the server --------------------------------------------------------------------


class _Handler(QuietHandler):
    server_version = "weaviate-standin"

    def _handle(self):
        raw = self.read_body()
        weaviate = self.server.owner
        status, payload = weaviate._dispatch(self.command, self.path, list(self.headers.items()), raw)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle


class Weaviate(Restartable):
    """A Weaviate on http://127.0.0.1:PORT (``url``), started by start() or ``with``.

    api_key: when set (also later, as an attribute), every request except
    /v1/.well-known/* needs ``Authorization: Bearer <api_key>``, else 401.
    modules: the vectorizer modules reported by /v1/meta and accepted in
    class definitions (default none: only ``vectorizer: "none"``).
    default_limit: the GraphQL Get limit when the query names none.
    """

    handler = _Handler

    UNAUTHENTICATED_PREFIXES = (BASE_PATH + "/.well-known/",)

    def __init__(self, api_key=None, port=None, contract=None, modules=None, default_limit=10):
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.api_key = api_key
        self.contract = contract or weaviate_contract.load()
        self.modules = dict(modules or {})
        self.default_limit = default_limit
        self._lock = threading.RLock()
        self._server = None
        self._thread = None
        self._stall_secs = 0
        self._stall_wake = threading.Event()
        self._reset_controls()
        self._reset_data()
        self._reset_records()

    # -- lifecycle ---------------------------------------------------------------

    def start(self):
        """Starts listening (again) on the stand-in's port."""
        return super().start()

    def stop(self):
        """Closes the listening socket and drops open connections: callers see
        connection refused until start(). Data and records are kept."""
        super().stop()

    up = start
    down = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self._wake_stalled()
        self.stop()

    # -- controls ------------------------------------------------------------------

    def _reset_controls(self):
        with self._lock:
            self._fail_status = None
            self._fail_times = None
            self._fail_path = None
            self._fail_rules = []
        self.stall(0)

    def fail(self, status=503, times=None, path=None):
        """Answers requests with status and an ErrorResponse: all of them until
        recover(), or the next `times` ones; path limits it to one path (e.g.
        "/v1/batch/objects")."""
        with self._lock:
            self._fail_status = status
            self._fail_times = times
            self._fail_path = path

    def recover(self):
        """Ends fail() and stall(): requests are answered normally again."""
        with self._lock:
            self._fail_status = None
            self._fail_times = None
            self._fail_path = None
        self.stall(0)

    def stall(self, seconds):
        """Holds every answer back `seconds` from now on; stall(0) ends it and
        releases requests that are being held."""
        with self._lock:
            self._stall_secs = seconds
            self._wake_stalled()

    def _wake_stalled(self):
        with self._lock:
            self._stall_wake.set()
            self._stall_wake = threading.Event()

    def fail_objects(self, which, times=1, message="injected failure: shard temporarily unavailable"):
        """Batch objects matching `which` come back FAILED (and are not stored)
        the next `times` times each one is sent; the others succeed.

        which: an id, an iterable of ids, or a predicate called with the
        object as sent (class, id, properties).
        """
        if callable(which):
            match = which
        else:
            ids = {canonical_id(which)} if isinstance(which, str) else {canonical_id(i) for i in which}
            match = lambda obj: obj.get("id") in ids  # noqa: E731
        with self._lock:
            self._fail_rules.append(_FailRule(match, times, message))

    # -- records and data ------------------------------------------------------------

    def _reset_records(self):
        with self._lock:
            self._requests = []
            self._violations = []
            self._unsupported = []
            self._failures = []
            self._graphql_errors = []
            self._batch_count = 0
            self._graphql_count = 0

    def _reset_data(self):
        with self._lock:
            self._classes = {}
            self._objects = {}

    def clear(self):
        """Forgets requests, violations, unsupported requests, failures and counts."""
        self._reset_records()

    def reset(self):
        """clear(), plus an empty schema and store and no fail/stall/fail_objects."""
        self._reset_records()
        self._reset_data()
        self._reset_controls()

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def requests_to(self, path, method=None):
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    @property
    def violations(self):
        with self._lock:
            return list(self._violations)

    @property
    def unsupported(self):
        with self._lock:
            return list(self._unsupported)

    @property
    def failures(self):
        """ObjectFailure for every object answered FAILED (injected or refused)."""
        with self._lock:
            return list(self._failures)

    @property
    def graphql_errors(self):
        """(query, [error messages]) for every GraphQL query answered with errors."""
        with self._lock:
            return list(self._graphql_errors)

    @property
    def batch_count(self):
        """POST /v1/batch/objects requests answered 200."""
        with self._lock:
            return self._batch_count

    @property
    def graphql_count(self):
        """POST /v1/graphql requests that reached the query engine."""
        with self._lock:
            return self._graphql_count

    @property
    def objects(self):
        """id -> stored object {class, id, properties, creationTimeUnix, lastUpdateTimeUnix}."""
        with self._lock:
            return copy.deepcopy(self._objects)

    @property
    def classes(self):
        """class name -> class definition as stored (with Weaviate's defaults)."""
        with self._lock:
            return copy.deepcopy(self._classes)

    def find(self, class_name=None, **props):
        """Stored objects of class_name (any if None) whose properties equal props."""
        with self._lock:
            found = [
                o
                for o in self._objects.values()
                if (class_name is None or o["class"] == class_name)
                and all(o["properties"].get(k) == v for k, v in props.items())
            ]
            return copy.deepcopy(found)

    def wait_for_objects(self, n, timeout=5.0, class_name=None, **props):
        """Waits until at least n stored objects match; returns them (maybe fewer)."""
        wait_until(lambda: len(self.find(class_name, **props)) >= n, timeout)
        return self.find(class_name, **props)

    def assert_clean(self):
        """Fails when any request broke the contract or left the implemented subset."""
        problems = [str(v) for v in self.violations] + [str(u) for u in self.unsupported]
        assert not problems, "Weaviate stand-in saw:\n  " + "\n  ".join(problems)

    def meta(self):
        version = self.contract.version.split("-", 1)[0] or "0.0.0"
        return {
            "hostname": f"http://{HOST}:{self.port}",
            "version": version,
            "modules": copy.deepcopy(self.modules),
            "grpcMaxMessageSize": 104858000,
        }

    # -- seeding without HTTP --------------------------------------------------------

    def add_class(self, cls):
        """Creates a class as POST /v1/schema would; raises AssertionError if refused."""
        errors = self.contract.validate(cls, "Class")
        assert not errors, f"invalid class: {errors}"
        try:
            return self._create_class(cls, None)
        except _Problem as p:
            raise AssertionError(f"class refused: {p}") from None

    def add_object(self, class_name, properties, id=None):
        """Stores one object as a batch would; returns its id. Raises AssertionError if refused."""
        obj = {"class": class_name, "properties": properties}
        if id is not None:
            obj["id"] = id
        errors = self.contract.validate({"objects": [obj]}, "BatchObjects")
        assert not errors, f"invalid object: {errors}"
        with self._lock:
            reply = self._store_object(obj, None, inject=False)
        result = reply["result"]
        assert result["status"] == "SUCCESS", f"object refused: {result}"
        return reply["id"]

    # -- request handling -----------------------------------------------------------

    def _dispatch(self, method, target, headers, raw):
        path, _, query = target.partition("?")
        req = Request(method, unquote(path), query, headers, raw)
        with self._lock:
            self._requests.append(req)
        try:
            status, payload = self._answer(req)
        except _Problem as p:
            status, payload = p.status, error_body(*p.messages)
        req.status = status
        return status, payload

    def _violate(self, req, schema, errors, source="contract"):
        method, path = (req.method, req.path) if req else ("(seed)", "")
        with self._lock:
            self._violations.append(Violation(method, path, schema, errors, source))

    def _unsupported_request(self, req, reason, detail=None):
        with self._lock:
            self._unsupported.append(Unsupported(req.method, req.path, reason, detail))

    def _take_injected_failure(self, path):
        with self._lock:
            status = self._fail_status
            if status is None or (self._fail_path is not None and self._fail_path != path):
                return None
            if self._fail_times is not None:
                self._fail_times -= 1
                if self._fail_times <= 0:
                    self._fail_status = self._fail_times = self._fail_path = None
            return status

    def _authorized(self, req):
        key = self.api_key
        if key is None or req.path.startswith(self.UNAUTHENTICATED_PREFIXES):
            return True
        value = req.header("authorization") or ""
        scheme, _, token = value.partition(" ")
        return scheme.lower() == "bearer" and token.strip() == key

    def _answer(self, req):
        with self._lock:
            seconds, wake = self._stall_secs, self._stall_wake
        if seconds:
            wake.wait(seconds)
        status = self._take_injected_failure(req.path)
        if status is not None:
            return status, error_body(f"injected failure: status {status}")
        if not self._authorized(req):
            return 401, error_body("anonymous access not enabled, please provide an auth scheme such as OIDC")

        path, method = req.path, req.method
        if method in ("GET", "HEAD"):
            if path in (BASE_PATH + "/.well-known/ready", BASE_PATH + "/.well-known/live"):
                return 200, None
            if path == BASE_PATH + "/meta":
                return 200, self.meta()
            if path == BASE_PATH + "/schema":
                with self._lock:
                    return 200, {"classes": copy.deepcopy(list(self._classes.values()))}
            m = re.fullmatch(re.escape(BASE_PATH) + r"/schema/([^/]+)", path)
            if m:
                with self._lock:
                    cls = self._classes.get(_capitalize(m.group(1)))
                    return (200, copy.deepcopy(cls)) if cls else (404, None)
        elif method == "POST":
            if path == BASE_PATH + "/schema":
                return 200, self._create_class(self._json_body(req, "Class"), req)
            m = re.fullmatch(re.escape(BASE_PATH) + r"/schema/([^/]+)/properties", path)
            if m:
                return 200, self._add_property(m.group(1), self._json_body(req, "Property"), req)
            if path == BASE_PATH + "/batch/objects":
                return self._batch(req, self._json_body(req, "BatchObjects"))
            if path == BASE_PATH + "/graphql":
                return self._graphql(req, self._json_body(req, "GraphQLQuery"))
        self._unsupported_request(req, "endpoint not implemented by the stand-in")
        return 404, error_body(f"path {path} with method {method} is not implemented here")

    def _json_body(self, req, schema):
        """The request's JSON body once it passed the contract's schema; raises _Problem."""
        media = (req.header("content-type") or "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            if media in ("application/yaml", "application/x-yaml"):
                self._unsupported_request(req, "YAML request bodies")
            else:
                self._violate(req, schema, [f"Content-Type {media or '(none)'} is not accepted"], "http")
            raise _Problem(415, f"unsupported media type {media or '(none)'}")
        if not req.raw:
            self._violate(req, schema, ["request body is required"])
            raise _Problem(422, "body in body is required")
        if req.json_error is not None:
            self._violate(req, schema, [f"body is not JSON: {req.json_error}"], "http")
            raise _Problem(400, f"parsing body from request failed: {req.json_error}")
        errors = self.contract.validate(req.body, schema)
        if errors:
            self._violate(req, schema, errors)
            raise _Problem(422, *errors)
        return req.body

    # -- schema ----------------------------------------------------------------------

    def _class_named(self, name):
        return self._classes.get(_capitalize(name)) if isinstance(name, str) else None

    def _data_type(self, dt, prop_name, own_class):
        """(kind, base) for a property's dataType: ("primitive", "text") or
        ("reference", [class names]); raises _Problem when Weaviate refuses it."""
        if len(dt) == 1 and (dt[0] in PRIMITIVE_TYPES or dt[0] in DEPRECATED_TYPES):
            return "primitive", DEPRECATED_TYPES.get(dt[0], dt[0])
        for entry in dt:
            if entry in PRIMITIVE_TYPES or entry in DEPRECATED_TYPES:
                raise _Problem(
                    422, f"property '{prop_name}': a dataType with several entries can only name classes"
                )
            if not CLASS_NAME.match(entry):
                raise _Problem(422, f"property '{prop_name}': data type '{entry}' is not a known data type")
            if entry != own_class and entry not in self._classes:
                raise _Problem(
                    422, f"property '{prop_name}': data type '{entry}' refers to a class that does not exist"
                )
        return "reference", list(dt)

    def _check_property(self, prop, own_class, seen, nested=False):
        name = prop.get("name")
        if not isinstance(name, str) or not name:
            raise _Problem(422, "property name is required")
        if not PROPERTY_NAME.match(name):
            raise _Problem(
                422,
                f"'{name}' is not a valid property name. Property names in Weaviate are restricted "
                "to valid GraphQL names, which must be /[_A-Za-z][_0-9A-Za-z]{0,230}/.",
            )
        if not nested and name.lower() in RESERVED_PROPERTY_NAMES:
            raise _Problem(422, f"'{name}' is a reserved property name")
        if name.lower() in seen:
            raise _Problem(422, f"class '{own_class}' has the property '{name}' more than once")
        seen.add(name.lower())
        dt = prop.get("dataType")
        if not dt:
            raise _Problem(422, f"property '{name}': dataType is required")
        kind, base = self._data_type(dt, name, own_class)
        if nested and kind == "reference":
            raise _Problem(422, f"nested property '{name}': references are not allowed in nested properties")
        is_text = kind == "primitive" and base in TEXT_TYPES
        if prop.get("tokenization") is not None and not is_text:
            raise _Problem(422, f"tokenization is not allowed for data type '{dt[0]}' of property '{name}'")
        if prop.get("indexSearchable") and not is_text:
            raise _Problem(
                422, f"`indexSearchable` is allowed only for text/text[] data types (property '{name}')"
            )
        if prop.get("indexRangeFilters") and not (kind == "primitive" and base in RANGE_TYPES):
            raise _Problem(
                422, f"`indexRangeFilters` is allowed only for int/number/date data types (property '{name}')"
            )
        nested_props = prop.get("nestedProperties")
        if kind == "primitive" and base in OBJECT_TYPES:
            if not nested_props:
                raise _Problem(422, f"property '{name}': at least one nested property is required for {base}")
            inner = set()
            for sub in nested_props:
                self._check_property(sub, own_class, inner, nested=True)
        elif nested_props:
            raise _Problem(422, f"property '{name}': nestedProperties are only allowed for object/object[]")

    def _check_vectorizer(self, name, where):
        if name not in (None, "none") and name not in self.modules:
            raise _Problem(422, f'{where}: no module with name "{name}" present')

    def _with_defaults(self, cls, name):
        out = copy.deepcopy(cls)
        out["class"] = name
        if out.get("vectorizer") is None and "vectorConfig" not in out:
            out["vectorizer"] = "none"
        mt = out.get("multiTenancyConfig") or {}
        out["multiTenancyConfig"] = {
            "enabled": bool(mt.get("enabled")),
            "autoTenantCreation": bool(mt.get("autoTenantCreation")),
            "autoTenantActivation": bool(mt.get("autoTenantActivation")),
        }
        out["properties"] = [self._property_defaults(p) for p in out.get("properties") or []]
        return out

    def _property_defaults(self, prop):
        prop = dict(prop)
        dt = prop["dataType"]
        if len(dt) == 1 and dt[0] in DEPRECATED_TYPES:
            prop["dataType"] = [DEPRECATED_TYPES[dt[0]]]
            dt = prop["dataType"]
        base = dt[0] if len(dt) == 1 else None
        if base in TEXT_TYPES:
            if prop.get("tokenization") is None:
                prop["tokenization"] = "word"
            if prop.get("indexSearchable") is None:
                prop["indexSearchable"] = True
        else:
            prop["indexSearchable"] = False
        if prop.get("indexFilterable") is None:
            prop["indexFilterable"] = True
        if prop.get("indexRangeFilters") is None:
            prop["indexRangeFilters"] = False
        if prop.get("nestedProperties"):
            prop["nestedProperties"] = [self._property_defaults(p) for p in prop["nestedProperties"]]
        return prop

    def _create_class(self, cls, req):
        raw_name = cls.get("class")
        if not isinstance(raw_name, str) or not raw_name:
            self._violate(req, "Class", ["the class name (\"class\") is required"], "weaviate")
            raise _Problem(422, "class name is required")
        name = _capitalize(raw_name)
        with self._lock:
            try:
                if not CLASS_NAME.match(name):
                    raise _Problem(
                        422,
                        f"'{raw_name}' is not a valid class name. Class names in Weaviate are restricted "
                        "to /[A-Z][_0-9A-Za-z]{0,254}/.",
                    )
                seen = set()
                for prop in cls.get("properties") or []:
                    self._check_property(prop, name, seen)
                self._check_vectorizer(cls.get("vectorizer"), "vectorizer")
                for vname, vconf in (cls.get("vectorConfig") or {}).items():
                    for module in (vconf.get("vectorizer") or {}):
                        self._check_vectorizer(module, f"vectorConfig {vname}")
            except _Problem as p:
                self._violate(req, "Class", list(p.messages), "weaviate")
                raise
            if any(existing.lower() == name.lower() for existing in self._classes):
                raise _Problem(422, f"class name {name!r} already exists")
            stored = self._with_defaults(cls, name)
            self._classes[name] = stored
            return copy.deepcopy(stored)

    def _add_property(self, class_name, prop, req):
        """Adds prop to an existing class; Weaviate answers every refusal with 422."""
        with self._lock:
            cls = self._class_named(class_name)
            if cls is None:
                raise _Problem(422, f"class {_capitalize(class_name)!r} not found in schema")
            name = prop.get("name")
            existing = {p["name"].lower() for p in cls["properties"]}
            if isinstance(name, str) and name.lower() in existing:
                raise _Problem(422, f"property {name!r} already exists in class {cls['class']!r}")
            try:
                self._check_property(prop, cls["class"], existing)
            except _Problem as p:
                self._violate(req, "Property", list(p.messages), "weaviate")
                raise
            cls["properties"].append(self._property_defaults(prop))
            return copy.deepcopy(prop)

    # -- batch -------------------------------------------------------------------------

    def _batch(self, req, body):
        fields = body.get("fields") or ["ALL"]
        replies = []
        with self._lock:
            for obj in body.get("objects") or []:
                reply = self._store_object(obj, req, inject=True)
                if "ALL" not in fields:
                    keep = {"class", "id", "creationTimeUnix", "result"}
                    if "schema" in fields:
                        keep.add("properties")
                    reply = {k: v for k, v in reply.items() if k in keep}
                replies.append(reply)
            self._batch_count += 1
        return 200, replies

    def _value_problem(self, value, dt, prop):
        """Why value does not fit the data type (None when it fits)."""
        if value is None:
            return None
        base = dt[0] if len(dt) == 1 else None
        if base is None or base not in PRIMITIVE_TYPES:
            if not isinstance(value, list) or not all(
                isinstance(v, dict) and isinstance(v.get("beacon"), str) for v in value
            ):
                return "a reference property takes a list of {\"beacon\": \"weaviate://...\"}"
            return None
        if base.endswith("[]"):
            if not isinstance(value, list):
                return f"not a list, but {_GO_TYPES.get(type(value), type(value).__name__)}"
            for item in value:
                problem = self._value_problem(item, [base[:-2]], prop)
                if problem:
                    return f"item {item!r}: {problem}"
            return None
        go_type = _GO_TYPES.get(type(value), type(value).__name__)
        if base == "text":
            ok = isinstance(value, str)
        elif base == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
        elif base == "number":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif base == "boolean":
            ok = isinstance(value, bool)
        elif base == "date":
            if isinstance(value, str) and not is_rfc3339(value):
                return f"requires a string with a RFC3339 formatted date, but the given value is {value!r}"
            ok = isinstance(value, str)
        elif base == "uuid":
            if isinstance(value, str) and not is_uuid(value):
                return f"{value!r} is not a valid uuid"
            ok = isinstance(value, str)
        elif base == "blob":
            if not isinstance(value, str):
                ok = False
            else:
                try:
                    base64.b64decode(value, validate=True)
                    ok = True
                except (binascii.Error, ValueError):
                    return "blob must be base64-encoded"
        elif base == "geoCoordinates":
            ok = isinstance(value, dict) and all(
                isinstance(value.get(k), (int, float)) and not isinstance(value.get(k), bool)
                for k in ("latitude", "longitude")
            )
        elif base == "phoneNumber":
            ok = isinstance(value, dict) and isinstance(value.get("input"), str)
        elif base == "object":
            if not isinstance(value, dict):
                ok = False
            else:
                declared = {p["name"]: p for p in prop.get("nestedProperties") or []}
                for key, inner in value.items():
                    if key not in declared:
                        return f"nested property '{key}' is not declared"
                    problem = self._value_problem(inner, declared[key]["dataType"], declared[key])
                    if problem:
                        return f"nested property '{key}': {problem}"
                return None
        else:
            return None
        return None if ok else f"not a {base}, but {go_type}"

    def _object_problem(self, obj):
        """(message, is_client_error) when Weaviate would refuse the object, else None."""
        class_name = obj.get("class")
        if not class_name:
            return "invalid object: the given class is empty", True
        cls = self._class_named(class_name)
        if cls is None:
            return f"class {_capitalize(class_name)!r} not found in schema", False
        if cls["multiTenancyConfig"]["enabled"]:
            return f"class {cls['class']} has multi-tenancy enabled, which this Weaviate does not serve", True
        if obj.get("tenant"):
            return (
                f"class {cls['class']} has multi-tenancy disabled, but request was with tenant", True
            )
        declared = {p["name"]: p for p in cls["properties"]}
        properties = obj.get("properties") or {}
        for name, value in properties.items():
            prop = declared.get(name)
            if prop is None:
                return (
                    f"no such prop with name '{name}' found in class '{cls['class']}' in the schema. "
                    "Check your schema files for which properties in this class are available",
                    True,
                )
            problem = self._value_problem(value, prop["dataType"], prop)
            if problem:
                kind = prop["dataType"][0]
                return f"invalid {kind} property '{name}' on class '{cls['class']}': {problem}", True
        return None

    def _injected(self, obj):
        for rule in self._fail_rules:
            try:
                hit = rule.match(obj)
            except Exception:  # noqa: BLE001 - a predicate that cannot judge the object does not match
                hit = False
            if hit:
                used = rule.used.get(obj["id"], 0)
                if used < rule.times:
                    rule.used[obj["id"]] = used + 1
                    return rule.message
        return None

    def _store_object(self, obj, req, inject):
        obj = copy.deepcopy(obj)
        obj["id"] = canonical_id(obj["id"]) if obj.get("id") else str(uuid.uuid4())
        if isinstance(obj.get("class"), str):
            obj["class"] = _capitalize(obj["class"])
        reply = {k: obj[k] for k in ("class", "id", "properties", "tenant") if k in obj}
        problem = self._object_problem(obj)
        injected = None if problem or not inject else self._injected(obj)
        message = problem[0] if problem else injected
        if message:
            if problem and problem[1]:
                self._violate(req, f"Object {obj.get('class')}", [message], "weaviate")
            self._failures.append(ObjectFailure(obj["id"], obj.get("class"), message, injected is not None))
            reply["result"] = {"status": "FAILED", "errors": error_body(message)}
            return reply
        now = _now_ms()
        previous = self._objects.pop(obj["id"], None)
        stored = {
            "class": obj["class"],
            "id": obj["id"],
            "properties": {k: v for k, v in (obj.get("properties") or {}).items() if v is not None},
            "creationTimeUnix": previous["creationTimeUnix"] if previous else now,
            "lastUpdateTimeUnix": now,
        }
        for key in ("vector", "vectors"):
            if obj.get(key) is not None:
                stored[key] = obj[key]
        self._objects[obj["id"]] = stored
        reply.update(
            properties=copy.deepcopy(stored["properties"]),
            creationTimeUnix=stored["creationTimeUnix"],
            lastUpdateTimeUnix=stored["lastUpdateTimeUnix"],
            result={"status": "SUCCESS"},
        )
        return reply

    # -- GraphQL -------------------------------------------------------------------------

    def _graphql(self, req, body):
        query = body.get("query")
        if not query:
            self._violate(req, "GraphQLQuery", ["query is empty"], "weaviate")
            raise _Problem(422, "query cannot be empty")
        with self._lock:
            self._graphql_count += 1
        try:
            return 200, {"data": self.run_graphql(query)}
        except GraphQLError as e:
            with self._lock:
                self._graphql_errors.append((query, [e.message]))
            if e.unsupported:
                self._unsupported_request(req, f"GraphQL: {e.message}", query)
            return 200, {"errors": [e.as_json()]}

    def run_graphql(self, query):
        """Answers a query's ``data`` or raises GraphQLError. The subset:

            [query [Name]] { Get { Class(where: W, limit: N, sort: S) { prop ... _additional { id } } } }

        - W is {path: ["p"], operator: Equal, valueText: "..."} on a text or
          text[] property, or {operator: And, operands: [such, ...]}; Equal
          matches when the value's tokens (split by the property's
          tokenization: word, lowercase, whitespace or field) all occur in the
          stored value;
        - N is a non-negative integer (default: default_limit);
        - S is [{path: ["p"], order: asc|desc}] (a single object also works)
          with one entry; missing values sort first ascending;
        - the selection names declared properties and optionally
          ``_additional { id }``.

        All three arguments are optional. Operators, orders and paths follow
        GraphQL typing: enums are bare (Equal, desc), not strings.
        """
        top = parse_graphql(query)
        if len(top) != 1 or top[0].name != "Get":
            field = next((f for f in top if f.name != "Get"), top[-1])
            if field.name in ("Aggregate", "Explore"):
                raise _unsupported(field, f"{field.name} queries are not supported")
            if field.name == "Get":
                raise _unsupported(field, "only a single Get per query is supported")
            raise _error_at(field, f'Cannot query field "{field.name}" on type "WeaviateObj".')
        get = top[0]
        if get.args:
            raise _error_at(get, 'Unknown argument on field "Get".')
        if not get.selections:
            raise _error_at(get, 'Field "Get" of type "GetObjectsObj" must have a selection.')
        if len(get.selections) != 1:
            extra = get.selections[1]
            raise _unsupported(extra, "only one class per Get is supported")
        field = get.selections[0]
        with self._lock:
            cls = self._classes.get(field.name)
            if cls is None:
                raise _error_at(field, f'Cannot query field "{field.name}" on type "GetObjectsObj".')
            cls = copy.deepcopy(cls)
            objects = copy.deepcopy([o for o in self._objects.values() if o["class"] == cls["class"]])
        declared = {p["name"]: p for p in cls["properties"]}

        for arg in field.args:
            if arg not in ("where", "limit", "sort"):
                raise _unsupported(field.args[arg], f'argument "{arg}" is not supported')
        if "where" in field.args:
            match = self._gql_where(field.args["where"], cls, declared)
            objects = [o for o in objects if match(o)]
        if "sort" in field.args:
            objects = self._gql_sort(field.args["sort"], cls, declared, objects)
        limit = self.default_limit
        if "limit" in field.args:
            value = field.args["limit"]
            if value.kind != "int":
                raise _invalid(value, "Int")
            if value.value < 0:
                raise _error_at(value, "limit must be a non-negative integer")
            limit = value.value
        objects = objects[:limit]

        if not field.selections:
            raise _error_at(field, f'Field "{field.name}" of type "[{field.name}]" must have a selection.')
        picks = []
        for sel in field.selections:
            if sel.name == "_additional":
                names = [s.name for s in sel.selections or []]
                nested = any(s.selections or s.args for s in sel.selections or [])
                if sel.args or not names or any(n != "id" for n in names) or nested:
                    raise _unsupported(sel, "only _additional { id } is supported")
            elif sel.name in declared:
                prop = declared[sel.name]
                if sel.args:
                    raise _error_at(sel, f'Unknown argument on field "{sel.name}".')
                base = prop["dataType"][0] if len(prop["dataType"]) == 1 else None
                if base not in PRIMITIVE_TYPES or base in OBJECT_TYPES:
                    raise _unsupported(sel, f"selecting {prop['dataType']} properties is not supported")
                if base == "geoCoordinates" or base == "phoneNumber":
                    raise _unsupported(sel, f"selecting {base} properties is not supported")
                if sel.selections:
                    raise _error_at(
                        sel, f'Field "{sel.name}" must not have a selection since it has no subfields.'
                    )
            else:
                raise _error_at(sel, f'Cannot query field "{sel.name}" on type "{cls["class"]}".')
            if sel.name not in picks:
                picks.append(sel.name)

        rows = []
        for obj in objects:
            row = {}
            for name in picks:
                if name == "_additional":
                    row[name] = {"id": obj["id"]}
                else:
                    row[name] = copy.deepcopy(obj["properties"].get(name))
            rows.append(row)
        return {"Get": {field.name: rows}}

    def _gql_path(self, value, cls, declared):
        items = _as_list(value)
        if not items or any(v.kind != "string" for v in items):
            raise _invalid(value, "[String]")
        if len(items) != 1:
            raise _unsupported(value, "paths through references are not supported")
        name = items[0].value
        if name not in declared:
            raise _error_at(
                value,
                f"no such prop with name '{name}' found in class '{cls['class']}' in the schema. "
                "Check your schema files for which properties in this class are available",
            )
        return declared[name]

    def _gql_where(self, value, cls, declared):
        if value.kind != "object":
            raise _invalid(value, "GetObjects" + cls["class"] + "WhereInpObj")
        fields = value.value
        operator = fields.get("operator")
        if operator is None:
            raise _error_at(value, "where: operator is required")
        if operator.kind != "enum" or operator.value not in _WHERE_OPERATORS:
            raise _invalid(operator, "WhereOperatorEnum")
        if operator.value == "And":
            for key in fields:
                if key not in ("operator", "operands"):
                    raise _unsupported(value, f'where: "{key}" next to operator And is not supported')
            operands = fields.get("operands")
            if operands is None or not _as_list(operands):
                raise _error_at(value, "where: And needs operands")
            matchers = []
            for operand in _as_list(operands):
                if operand.kind != "object":
                    raise _invalid(operand, "GetObjects" + cls["class"] + "WhereOperandsInpObj")
                inner = operand.value.get("operator")
                if inner is not None and inner.kind == "enum" and inner.value != "Equal":
                    raise _unsupported(inner, f"where: operator {inner.value} inside And is not supported")
                matchers.append(self._gql_where(operand, cls, declared))
            return lambda obj: all(m(obj) for m in matchers)
        if operator.value != "Equal":
            raise _unsupported(operator, f"where: operator {operator.value} is not supported")
        for key in fields:
            if key in _WHERE_VALUES and key != "valueText":
                raise _unsupported(value, f"where: {key} is not supported")
            if key not in ("operator", "path", "valueText") and key not in _WHERE_VALUES:
                raise _error_at(fields[key], f'In field "{key}": Unknown field.')
        if "path" not in fields:
            raise _error_at(value, "where: path is required")
        text = fields.get("valueText")
        path = _as_list(fields["path"])
        if len(path) == 1 and path[0].kind == "string" and path[0].value == "id":
            # Weaviate filters on the object id itself with path ["id"].
            if text is None or text.kind != "string":
                raise _unsupported(value, "where: a filter on id needs valueText")
            wanted_id = text.value.lower()
            return lambda obj: obj["id"].lower() == wanted_id
        prop = self._gql_path(fields["path"], cls, declared)
        if text is None:
            raise _unsupported(value, "where: Equal needs valueText")
        if text.kind != "string":
            raise _invalid(text, "String")
        base = prop["dataType"][0]
        if base not in TEXT_TYPES:
            raise _error_at(text, f'data type filter cannot use "valueText" on type "{base}"')
        if prop.get("indexFilterable") is False:
            name = prop["name"]
            raise _error_at(
                value,
                f"Filtering by property '{name}' requires inverted index. Is `indexFilterable` "
                f"option of property '{name}' enabled? Set it to `true` or leave empty",
            )
        tokenization = prop.get("tokenization") or "word"
        if tokenization not in FILTER_TOKENIZATIONS:
            raise _unsupported(text, f"where: filtering {tokenization}-tokenized properties is not supported")
        wanted = set(tokenize(text.value, tokenization))
        name = prop["name"]

        def match(obj):
            stored = obj["properties"].get(name)
            if stored is None or not wanted:
                return False
            values = stored if isinstance(stored, list) else [stored]
            have = set()
            for v in values:
                have.update(tokenize(v, tokenization))
            return wanted <= have

        return match

    def _gql_sort(self, value, cls, declared, objects):
        entries = _as_list(value)
        if not entries:
            return objects
        if len(entries) != 1:
            raise _unsupported(value, "sorting by more than one path is not supported")
        entry = entries[0]
        if entry.kind != "object":
            raise _invalid(entry, "SortInpObj")
        for key in entry.value:
            if key not in ("path", "order"):
                raise _error_at(entry, f'In field "{key}": Unknown field.')
        if "path" not in entry.value:
            raise _error_at(entry, "sort: path is required")
        prop = self._gql_path(entry.value["path"], cls, declared)
        order = entry.value.get("order")
        descending = False
        if order is not None:
            if order.kind != "enum" or order.value not in ("asc", "desc"):
                raise _invalid(order, "SortOrderEnum")
            descending = order.value == "desc"
        base = prop["dataType"][0]
        if base not in ("text", "int", "number", "boolean", "date"):
            raise _unsupported(entry, f"sorting by {base} properties is not supported")
        name = prop["name"]

        def key(obj):
            v = obj["properties"].get(name)
            if v is None:
                return (False, 0)
            return (True, parse_rfc3339(v) if base == "date" else v)

        return sorted(objects, key=key, reverse=descending)
