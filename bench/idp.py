"""Signing keys, tokens and a local OpenID provider serving their public half.

One key per algorithm (RSA-2048 for RS256, P-256 for ES256, Ed25519 for
EdDSA), all published in one JWKS under distinct `kid`s. The provider answers
OIDC discovery and the JWKS on 127.0.0.1 from a thread.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

AUDIENCE = "bench-api"
SUBJECT = "bench-user"
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks.json"


def _new_key(alg):
    """(private key, PyJWT algorithm class that serialises its JWK)."""
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1()), ECAlgorithm
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm
    raise ValueError(f"no key type for {alg}")


class Keys:
    """A private key per algorithm and the JWKS holding every public key."""

    def __init__(self, algs):
        self.private = {}
        self.jwks = {"keys": []}
        for alg in algs:
            key, codec = _new_key(alg)
            jwk = codec.to_jwk(key.public_key(), as_dict=True)
            jwk.update(kid=self.kid(alg), alg=alg, use="sig")
            self.private[alg] = key
            self.jwks["keys"].append(jwk)

    @staticmethod
    def kid(alg):
        return f"bench-{alg.lower()}"

    def jwks_json(self):
        return json.dumps(self.jwks, separators=(",", ":"))

    def token(self, alg, issuer, lifetime=3600, sub=SUBJECT):
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": AUDIENCE,
            "sub": sub,
            "iat": now,
            "exp": now + lifetime,
        }
        return jwt.encode(claims, self.private[alg], algorithm=alg, headers={"kid": self.kid(alg)})


class IdentityProvider:
    """Serves discovery and the JWKS on a free 127.0.0.1 port until stopped."""

    def __init__(self, keys):
        self.keys = keys
        self.server = None
        self.thread = None

    @property
    def issuer(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self):
        return self.server.server_address[1]

    def documents(self):
        discovery = {"issuer": self.issuer, "jwks_uri": self.issuer + JWKS_PATH}
        return {
            DISCOVERY_PATH: json.dumps(discovery).encode(),
            JWKS_PATH: self.keys.jwks_json().encode(),
        }

    def start(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                body = provider.documents().get(self.path.split("?", 1)[0])
                status = 200 if body is not None else 404
                body = body if body is not None else b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None
