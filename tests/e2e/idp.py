"""A test OpenID provider: discovery, a JWKS it can rotate, and token minting.

The provider runs in a thread on 127.0.0.1. It can be taken down and brought
back on the same port, made to answer every request with an error status, and
it counts the requests it receives per path so tests can tell how often the
gateway fetched keys.

For OAuth clients that find it on their own (the MCP SDK's), it also
publishes RFC 8414 authorization server metadata and runs a token endpoint
for the client credentials grant (RFC 6749 section 4.4) of clients
registered in advance (register_client), which honours RFC 8707's
`resource` (the token's `aud`) and narrows `scope` to what the client may
have (RFC 6749 section 3.3).

Tokens are signed with PyJWT. Deliberately broken tokens (``alg: none``,
HMAC keyed with the RSA public key, mismatched algorithms, garbage segments)
are assembled by hand from the same pieces, since PyJWT refuses to make them.
"""

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from netutil import HOST, Restartable, free_port, wait_until

DEFAULT_AUDIENCE = "attach-api"
DEFAULT_SUBJECT = "user-42"
DISCOVERY_PATH = "/.well-known/openid-configuration"
AS_METADATA_PATH = "/.well-known/oauth-authorization-server"
TOKEN_PATH = "/token"
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
ALL_ALGS = RSA_ALGS + ("ES256", "ES384", "EdDSA")

_PYJWT_ALGS = get_default_algorithms()


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint_b64(n):
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def _json_bytes(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


class SigningKey:
    """A private key for one algorithm, with its public JWK.

    RS*/PS* use RSA-2048, ES256 P-256, ES384 P-384, EdDSA Ed25519.
    """

    def __init__(self, alg="RS256", kid=None, jwk_alg=True):
        self.alg = alg
        self.kid = kid or f"{alg.lower()}-{secrets.token_hex(6)}"
        self.jwk_alg = jwk_alg
        if alg in RSA_ALGS:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "ES384":
            self.private = ec.generate_private_key(ec.SECP384R1())
        elif alg == "EdDSA":
            self.private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"no key type for {alg}")
        self.public = self.private.public_key()

    @property
    def family(self):
        if self.alg in RSA_ALGS:
            return "RSA"
        return {"ES256": "P-256", "ES384": "P-384", "EdDSA": "Ed25519"}[self.alg]

    def jwk(self):
        if self.alg in RSA_ALGS:
            nums = self.public.public_numbers()
            jwk = {"kty": "RSA", "n": _uint_b64(nums.n), "e": _uint_b64(nums.e)}
        elif self.alg in ("ES256", "ES384"):
            nums = self.public.public_numbers()
            size = 32 if self.alg == "ES256" else 48
            jwk = {
                "kty": "EC",
                "crv": "P-256" if self.alg == "ES256" else "P-384",
                "x": b64url(nums.x.to_bytes(size, "big")),
                "y": b64url(nums.y.to_bytes(size, "big")),
            }
        else:
            raw = self.public.public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        jwk["kid"] = self.kid
        jwk["use"] = "sig"
        if self.jwk_alg:
            jwk["alg"] = self.alg
        return jwk

    def public_pem(self, fmt="spki"):
        """The public key as PEM bytes (``spki`` or, for RSA, ``pkcs1``)."""
        public_format = {
            "spki": serialization.PublicFormat.SubjectPublicKeyInfo,
            "pkcs1": serialization.PublicFormat.PKCS1,
        }[fmt]
        return self.public.public_bytes(serialization.Encoding.PEM, public_format)

    def sign(self, signing_input, alg=None):
        """Signs bytes with this key using PyJWT's implementation of alg."""
        algorithm = _PYJWT_ALGS[alg or self.alg]
        return algorithm.sign(signing_input, algorithm.prepare_key(self.private))


def compact(header, payload, signer=None):
    """Assembles a compact JWS from parts, each a dict (JSON-encoded) or raw bytes.

    signer maps the signing input to the signature bytes; None gives an
    empty signature segment.
    """
    h = header if isinstance(header, bytes) else _json_bytes(header)
    p = payload if isinstance(payload, bytes) else _json_bytes(payload)
    signing_input = f"{b64url(h)}.{b64url(p)}".encode()
    signature = signer(signing_input) if signer else b""
    return f"{signing_input.decode()}.{b64url(signature)}"


def hmac_signer(secret, alg="HS256"):
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    return lambda data: hmac.new(secret, data, digest).digest()


class _Handler(BaseHTTPRequestHandler):
    server_version = "test-idp"
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        idp = self.server.owner
        path = self.path.split("?", 1)[0]
        idp._record(path)
        if idp.delay_secs:
            time.sleep(idp.delay_secs)
        status, body = idp._answer(path)
        self._reply(status, body)

    def do_POST(self):
        idp = self.server.owner
        path = self.path.split("?", 1)[0]
        idp._record(path)
        if path != idp.issuer_path + TOKEN_PATH:
            self.send_error(405)
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode("latin-1"), keep_blank_values=True)
        status, body = idp._token_answer(form, self.headers.get("Authorization"))
        headers = {"Cache-Control": "no-store"}
        if status == 401 and self.headers.get("Authorization"):
            # RFC 6749 section 5.2: a client that tried Basic is told the scheme.
            headers["WWW-Authenticate"] = 'Basic realm="test-idp"'
        self._reply(status, body, headers)

    def _reply(self, status, body, headers=None):
        data = _json_bytes(body) if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


class OAuthClient:
    """A client registered with the provider: its credentials, the subject its
    tokens name, and the scopes it may be granted."""

    def __init__(self, client_id, secret, sub, scopes):
        self.client_id = client_id
        self.secret = secret
        self.sub = sub
        self.scopes = list(scopes)


def _basic_credentials(header):
    """(client_id, secret) from an RFC 6749 section 2.3.1 Basic header, or None."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except ValueError:
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote(client_id), unquote(secret)) if sep else None


class IdP(Restartable):
    """An OpenID provider on http://127.0.0.1:PORT[issuer_path].

    keys: algorithms (or SigningKey objects) published from the start; the
    first one is the default signing key.
    """

    handler = _Handler

    def __init__(self, keys=("RS256",), issuer_path="", jwks_path="/keys/jwks.json", port=None):
        self.port = port or free_port()
        self.origin = f"http://{HOST}:{self.port}"
        self.issuer = self.origin + issuer_path
        self.issuer_path = issuer_path
        self.jwks_path = jwks_path
        self.jwks_uri = self.origin + jwks_path
        self.keys = [k if isinstance(k, SigningKey) else SigningKey(k) for k in keys]
        self.fail_status = None  # when set, every request gets this status
        self.clients = {}  # client_id -> OAuthClient
        self.token_requests = []  # one dict per token request, see _token_answer
        self.delay_secs = 0  # when set, every answer is held back this long
        self._lock = threading.Lock()
        self._counts = Counter()
        self._log = []
        self._server = None
        self._thread = None

    # -- serving ---------------------------------------------------------

    @property
    def discovery_path(self):
        return self.issuer_path + DISCOVERY_PATH

    @property
    def metadata_path(self):
        """RFC 8414 section 3.1: the well-known suffix goes before the issuer's path."""
        return AS_METADATA_PATH + self.issuer_path

    @property
    def token_endpoint(self):
        return self.issuer + TOKEN_PATH

    def discovery(self):
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.token_endpoint,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted({k.alg for k in self.keys}),
        }

    def metadata(self):
        """RFC 8414 section 2 authorization server metadata."""
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.token_endpoint,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
            "response_types_supported": ["code"],
        }

    def jwks(self):
        with self._lock:
            return {"keys": [k.jwk() for k in self.keys]}

    def _answer(self, path):
        if self.fail_status is not None:
            return self.fail_status, {"error": "server_error"}
        if path == self.discovery_path:
            return 200, self.discovery()
        if path == self.metadata_path:
            return 200, self.metadata()
        if path == self.jwks_path:
            return 200, self.jwks()
        return 404, {"error": "not_found"}

    def _record(self, path):
        with self._lock:
            self._counts[path] += 1
            self._log.append((time.monotonic(), path))

    # -- the token endpoint --------------------------------------------------

    def register_client(self, client_id=None, secret=None, sub=None, scopes=()):
        """Registers a confidential client for the client credentials grant.

        Its tokens name sub (default: the client id) and carry the requested
        scopes it is allowed (all of them when it asks for none)."""
        client_id = client_id or f"client-{secrets.token_hex(4)}"
        client = OAuthClient(client_id, secret or secrets.token_urlsafe(16), sub or client_id, scopes)
        with self._lock:
            self.clients[client_id] = client
        return client

    def _authenticate(self, form, authorization):
        """The registered client the request authenticates as, with the method used."""
        basic = _basic_credentials(authorization)
        if basic is not None:
            method, (client_id, secret) = "client_secret_basic", basic
        elif "client_id" in form and "client_secret" in form:
            method = "client_secret_post"
            client_id, secret = form["client_id"][0], form["client_secret"][0]
        else:
            return None, None
        with self._lock:
            client = self.clients.get(client_id)
        if client is None or not hmac.compare_digest(client.secret, secret):
            return None, method
        return client, method

    def _token_answer(self, form, authorization):
        """RFC 6749 section 4.4.2 / 5.1 / 5.2, with RFC 8707's resource.

        Every request is kept in token_requests as {"form": {name: [values]},
        "auth_method", "client_id", "status", "claims"} (claims of the token
        issued, else None)."""
        record = {"form": form, "auth_method": None, "client_id": None, "status": None, "claims": None}
        with self._lock:
            self.token_requests.append(record)
        status, body = self._grant(form, authorization, record)
        record["status"] = status
        return status, body

    def _grant(self, form, authorization, record):
        if self.fail_status is not None:
            return self.fail_status, {"error": "server_error"}
        client, method = self._authenticate(form, authorization)
        record["auth_method"] = method
        if client is None:
            return 401, {"error": "invalid_client"}
        record["client_id"] = client.client_id
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}
        resources = form.get("resource", [])
        if len(resources) > 1 or any("#" in r or "://" not in r for r in resources):
            # RFC 8707 section 2: an absolute URI without a fragment; one audience per token here.
            return 400, {"error": "invalid_target"}
        requested = form["scope"][0].split() if "scope" in form else list(client.scopes)
        granted = [s for s in requested if s in client.scopes]
        claims = self.claims(sub=client.sub, client_id=client.client_id, scope=" ".join(granted))
        if resources:
            claims["aud"] = resources[0]
        record["claims"] = claims
        key = self.key
        token = jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid})
        return 200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": claims["exp"] - claims["iat"],
            "scope": " ".join(granted),
        }

    # -- request accounting ----------------------------------------------

    def count(self, path):
        with self._lock:
            return self._counts[path]

    @property
    def jwks_fetches(self):
        return self.count(self.jwks_path)

    @property
    def discovery_fetches(self):
        return self.count(self.discovery_path)

    def fetch_times(self, path=None):
        """Monotonic times of the requests for path (default: the JWKS)."""
        path = path or self.jwks_path
        with self._lock:
            return [t for t, p in self._log if p == path]

    def requests(self):
        with self._lock:
            return list(self._log)

    def wait_for_fetches(self, n, timeout, path=None):
        """Waits until path (default: the JWKS) was requested at least n times."""
        path = path or self.jwks_path
        return wait_until(lambda: self.count(path) >= n, timeout)

    # -- keys --------------------------------------------------------------

    @property
    def key(self):
        return self.keys[0]

    def key_for(self, alg):
        return next(k for k in self.keys if k.alg == alg)

    def add_key(self, key="RS256", first=False):
        key = key if isinstance(key, SigningKey) else SigningKey(key)
        with self._lock:
            if first:
                self.keys.insert(0, key)
            else:
                self.keys.append(key)
        return key

    def remove_key(self, key):
        kid = key.kid if isinstance(key, SigningKey) else key
        with self._lock:
            self.keys = [k for k in self.keys if k.kid != kid]

    def rotate(self, alg=None):
        """Publishes a new signing key first in the set and retires the old one."""
        old = self.key
        new = self.add_key(SigningKey(alg or old.alg), first=True)
        self.remove_key(old)
        return new

    # -- tokens -------------------------------------------------------------

    def claims(self, drop=(), **overrides):
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": DEFAULT_AUDIENCE,
            "sub": DEFAULT_SUBJECT,
            "iat": now,
            "exp": now + 600,
            "jti": secrets.token_hex(8),
        }
        claims.update(overrides)
        for name in drop:
            claims.pop(name, None)
        return claims

    def token(self, key=None, alg=None, headers=None, drop=(), **claims):
        """A well-formed token signed by PyJWT.

        key defaults to the provider's first key, alg to the key's algorithm;
        headers are merged into the JOSE header (kid is the key's by default);
        claims override the defaults (iss, aud, sub, iat, exp, jti) and drop
        removes claims.
        """
        key = key or self.key
        header = {"kid": key.kid}
        header.update(headers or {})
        return jwt.encode(
            self.claims(drop=drop, **claims), key.private, algorithm=alg or key.alg, headers=header
        )

    def forged(self, header, payload=None, key=None, sign_alg=None, signer=None):
        """A hand-assembled token: header and payload as given (dict or raw bytes).

        The signature comes from signer if given, else from key (default: the
        provider's first key) with sign_alg (default: the key's algorithm).
        Pass signer=False for an empty signature.
        """
        payload = self.claims() if payload is None else payload
        if signer is None:
            key = key or self.key
            signer = lambda data: key.sign(data, sign_alg)  # noqa: E731
        return compact(header, payload, signer or None)
