"""Weaviate's published OpenAPI (Swagger 2.0) document as a JSON-Schema validator.

The document lives at ../shared/contracts/weaviate-openapi.json from the
repository root; WEAVIATE_CONTRACT overrides the path.

Swagger 2.0 definitions are close to JSON Schema draft 4. The differences
handled here:

- ``x-nullable: true`` admits JSON null next to the declared type (Swagger
  has no null type otherwise, so null is refused everywhere else);
- other vendor keys (``x-*``), ``discriminator``, ``readOnly``, ``example``
  and the like carry no validation meaning and are ignored;
- ``format`` is checked for uuid, date-time, int32 and int64; every other
  format (float, uri, url, ...) is accepted as it is.

Names accepted by validate(): every key of ``definitions`` (Class, Property,
Object, GraphQLQuery, ...), the body schemas that are written inline in the
paths under the names in BODY_SCHEMAS (BatchObjects), and the operationId of
any operation with a body parameter (``batch.objects.create``).
"""

import copy
import datetime
import functools
import json
import os
import re
from pathlib import Path

import referencing
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing.jsonschema import DRAFT4

CONTRACT_ENV = "WEAVIATE_CONTRACT"
CONTRACT_URI = "urn:weaviate:openapi"

# Body schemas written inline in the paths, under a definition-like name.
BODY_SCHEMAS = {
    "BatchObjects": ("/batch/objects", "post"),
}

_REPO_ROOT = Path(__file__).resolve().parents[2]


def contract_path():
    """The contract file: $WEAVIATE_CONTRACT, else ../shared/contracts/... from the repo root."""
    override = os.environ.get(CONTRACT_ENV)
    if override:
        return Path(override)
    return Path(os.path.normpath(_REPO_ROOT / ".." / "shared" / "contracts" / "weaviate-openapi.json"))


# -- formats -----------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def is_rfc3339(text):
    """True when text is an RFC 3339 date-time with a zone (Z or +hh:mm)."""
    if not isinstance(text, str):
        return False
    m = _RFC3339.match(text)
    if not m:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        datetime.datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return False
    zone = m.group(8)
    if zone not in ("Z", "z") and (int(zone[1:3]) > 23 or int(zone[4:6]) > 59):
        return False
    return second <= 60


def parse_rfc3339(text):
    """An aware datetime for an RFC 3339 string (leap seconds are clamped to :59)."""
    m = _RFC3339.match(text)
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = m.group(7) or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz = datetime.timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = datetime.timezone(sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return datetime.datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=tz)


def is_uuid(text):
    return isinstance(text, str) and bool(_UUID.match(text))


def _format_checker():
    checker = FormatChecker(formats=())

    @checker.checks("uuid")
    def _uuid(value):
        return not isinstance(value, str) or is_uuid(value)

    @checker.checks("date-time")
    def _date_time(value):
        return not isinstance(value, str) or is_rfc3339(value)

    def _int_range(bits):
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

        def check(value):
            if isinstance(value, bool) or not isinstance(value, int):
                return True
            return low <= value <= high

        return check

    checker.checks("int32")(_int_range(32))
    checker.checks("int64")(_int_range(64))
    return checker


FORMATS = _format_checker()


# -- Swagger 2.0 -> JSON Schema draft 4 ---------------------------------------


def _admit_null(schema):
    """Rewrites one schema node that carries x-nullable: true so that null passes."""
    if "$ref" in schema:
        ref = {"$ref": schema.pop("$ref")}
        rest = {k: v for k, v in schema.items() if not k.startswith("x-")}
        schema.clear()
        schema.update(rest)
        schema["anyOf"] = [ref, {"type": "null"}]
        return
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        schema["type"] = kind + ["null"]
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = schema["enum"] + [None]


def _swagger_to_draft4(node):
    if isinstance(node, dict):
        for value in node.values():
            _swagger_to_draft4(value)
        if node.get("x-nullable") is True and ("$ref" in node or "type" in node):
            _admit_null(node)
    elif isinstance(node, list):
        for value in node:
            _swagger_to_draft4(value)
    return node


def _pointer(*parts):
    return "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


# -- error text ----------------------------------------------------------------


def _location(path):
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _describe(error):
    if error.validator == "anyOf" and error.context:
        # x-nullable references become anyOf [ref, null]; report the ref's complaint.
        real = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
        if real:
            error = best_match(real)
    return f"{_location(error.absolute_path)}: {error.message}"


class Contract:
    """The OpenAPI document and validators for its definitions."""

    def __init__(self, path=None):
        self.path = Path(path) if path else contract_path()
        with open(self.path, encoding="utf-8") as f:
            self.document = json.load(f)
        self._prepared = _swagger_to_draft4(copy.deepcopy(self.document))
        self._registry = referencing.Registry().with_resource(
            CONTRACT_URI, DRAFT4.create_resource(self._prepared)
        )
        self._validators = {}

    @property
    def version(self):
        return self.document.get("info", {}).get("version", "")

    @property
    def base_path(self):
        return self.document.get("basePath", "")

    def definitions(self):
        return sorted(self.document.get("definitions", {}))

    def names(self):
        """Every name validate() accepts."""
        return self.definitions() + sorted(BODY_SCHEMAS) + sorted(self._operations())

    def _operations(self):
        ops = {}
        for path, item in self.document.get("paths", {}).items():
            for method, op in item.items():
                if not isinstance(op, dict) or "operationId" not in op:
                    continue
                for index, param in enumerate(op.get("parameters", [])):
                    if param.get("in") == "body":
                        ops[op["operationId"]] = (path, method, index)
        return ops

    def _body_pointer(self, path, method):
        op = self.document["paths"][path][method]
        for index, param in enumerate(op.get("parameters", [])):
            if param.get("in") == "body":
                return _pointer("paths", path, method, "parameters", index, "schema")
        raise KeyError(f"{method.upper()} {path} takes no body in the contract")

    def _pointer_for(self, name):
        if name in self.document.get("definitions", {}):
            return _pointer("definitions", name)
        if name in BODY_SCHEMAS:
            return self._body_pointer(*BODY_SCHEMAS[name])
        ops = self._operations()
        if name in ops:
            path, method, _ = ops[name]
            return self._body_pointer(path, method)
        raise KeyError(f"the Weaviate contract has no schema named {name!r}")

    def schema(self, name):
        """The named schema as written in the document (refs unresolved)."""
        node = self.document
        for part in self._pointer_for(name).split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def validator(self, name):
        if name not in self._validators:
            ref = {"$ref": f"{CONTRACT_URI}#/{self._pointer_for(name)}"}
            self._validators[name] = Draft4Validator(
                ref, registry=self._registry, format_checker=FORMATS
            )
        return self._validators[name]

    def validate(self, value, name):
        """Readable errors of value against the named schema; empty when valid."""
        errors = self.validator(name).iter_errors(value)
        ordered = sorted(errors, key=lambda e: (list(map(str, e.absolute_path)), e.message))
        return list(dict.fromkeys(_describe(e) for e in ordered))

    def check(self, value, name):
        """Raises AssertionError listing the errors when value does not match."""
        errors = self.validate(value, name)
        if errors:
            raise AssertionError(f"not a valid Weaviate {name}:\n  " + "\n  ".join(errors))


@functools.lru_cache(maxsize=None)
def _load(path):
    return Contract(path)


def missing():
    """Why the contract checks cannot run here (one line), or None. The
    contract is Weaviate's published OpenAPI document, which this repository
    does not ship: a clone on its own skips the checks that need it, saying
    so, instead of failing."""
    path = contract_path()
    if path.is_file():
        return None
    return f"Weaviate contract not found at {path}: set {CONTRACT_ENV} to run the Weaviate checks"


def load(path=None):
    """The contract at path (default: contract_path()), loaded once per path."""
    return _load(str(Path(path) if path else contract_path()))


def validate(value, name, contract=None):
    """Readable errors of value against the named definition; empty when valid."""
    return (contract or load()).validate(value, name)
