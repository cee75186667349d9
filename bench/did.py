"""Self-issued DID-JWTs for the DID rows: a did:key identity per algorithm.

EdDSA uses an Ed25519 key (multicodec 0xed), ES256K a secp256k1 key
(multicodec 0xe7, compressed point) with a low-S signature, as did-jwt makes.
"""

import base64
import json
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def base58(data):
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = ALPHABET[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DidSigner:
    def __init__(self, alg):
        self.alg = alg
        raw = serialization.PublicFormat.Raw
        if alg == "EdDSA":
            self.key = ed25519.Ed25519PrivateKey.generate()
            public = self.key.public_key().public_bytes(serialization.Encoding.Raw, raw)
            prefix = b"\xed\x01"
        elif alg == "ES256K":
            self.key = ec.generate_private_key(ec.SECP256K1())
            public = self.key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
            prefix = b"\xe7\x01"
        else:
            raise ValueError(f"no DID key type for {alg}")
        self.did = "did:key:z" + base58(prefix + public)

    def _sign(self, message):
        if self.alg == "EdDSA":
            return self.key.sign(message)
        r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(hashes.SHA256())))
        s = min(s, SECP256K1_N - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def token(self, audience, lifetime=3600):
        now = int(time.time())
        header = {"alg": self.alg, "typ": "JWT"}
        claims = {"iss": self.did, "aud": audience, "iat": now, "exp": now + lifetime}
        encode = lambda obj: b64url(json.dumps(obj, separators=(",", ":")).encode())  # noqa: E731
        signing_input = f"{encode(header)}.{encode(claims)}"
        return f"{signing_input}.{b64url(self._sign(signing_input.encode()))}"
