"""did:key identifiers (W3C did:key): the multicodec-prefixed public key in
base58btc, written here so the tests check the gateway's DIDs against an
encoding of their own."""

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ED25519_PUB = b"\xed\x01"


def base58(data):
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = ALPHABET[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def did_key(prefix, public):
    """The did:key of a public key with its multicodec prefix."""
    return "did:key:z" + base58(prefix + public)
