"""DID-JWT sign-in: self-issued tokens whose `iss` is a DID, verified by the
filter from the DID alone (no network).

Tokens come from the did-jwt reference library, through the Node.js peer in
tests/did-peer (`make node-peers` installs it); tampered variants are made
here from those tokens. The peer also runs did-jwt's own verifier, so the
suite can show that the tokens it expects to pass are valid for the reference
implementation and the forged ones are not.

The module's stack trusts no identity provider: DID sign-in is configured by
the `did` section of the ATTACH_CONFIG file. Other tests start stacks that
combine OIDC and DID, or configure DID sign-in through DID_AUD, DID_ALLOW and
DID_MAX_TTL, and run `attach token`.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway import REPO, Gateway, run_launcher
from httpc import assert_passed, assert_refused
from did_key import did_key
from idp import DEFAULT_AUDIENCE, b64url

PEER_DIR = REPO / "tests/did-peer"
PEER_SCRIPT = PEER_DIR / "mint.mjs"

DID_AUD = "did:web:gateway.attach.test"
DID_AUD_2 = "https://gateway.attach.test/api"
USER_AGENT = "attach-e2e-did/1.0"

# The launcher reads these; a value in the caller's environment must not leak
# into a stack (None removes the variable from the gateway's environment).
NO_DID_ENV = {"DID_AUD": None, "DID_ALLOW": None, "DID_MAX_TTL": None}

DID_SECTION = {
    "audiences": [DID_AUD, DID_AUD_2],
    "max_ttl_secs": 3600,
    "allow": ["did:key:*", "did:pkh:eip155:1:*"],
}

# DID sign-in only: no OIDC provider is configured and the test IdP is not
# even listening (its object still mints tokens for the refusal cases).
STACK = dict(provider="config", idp_up=False, config={"did": DID_SECTION}, env=NO_DID_ENV)

KINDS = ("key-ed25519", "key-secp256k1", "key-p256", "pkh-es256k-r", "pkh-es256k")

JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def user_of(did):
    """The X-Attach-User the gateway stamps for a DID, derived here on its own:
    a did:pkh:eip155 account (CAIP-10) names one key whatever the case of its
    hex address or zeros before its chain id, so the gateway writes the
    address in lower case and the chain id as a plain decimal; other DIDs
    pass as they are."""
    m = re.fullmatch(r"did:pkh:eip155:([0-9]+):0x([0-9A-Fa-f]{40})", did)
    if not m:
        return did
    return f"did:pkh:eip155:{int(m.group(1))}:0x{m.group(2).lower()}"


def now():
    return int(time.time())


# -- the Node.js peer ------------------------------------------------------------


def _peer_problem():
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (PEER_DIR / "node_modules/did-jwt/package.json").is_file():
        return f"{PEER_DIR}/node_modules is missing (make node-peers)"
    return None


@pytest.fixture(scope="session")
def did_peer():
    problem = _peer_problem()
    if problem:
        pytest.fail(f"the DID-JWT peer is not installed: {problem}", pytrace=False)
    return peer


def peer(requests):
    """Runs mint.mjs once for a list of requests and returns its results; any
    request the peer could not serve fails the test."""
    proc = subprocess.run(
        ["node", str(PEER_SCRIPT)],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        cwd=PEER_DIR,
        timeout=60,
    )
    assert proc.returncode == 0, f"mint.mjs exited {proc.returncode}: {proc.stderr}"
    results = json.loads(proc.stdout)
    assert len(results) == len(requests), results
    for request, result in zip(requests, results):
        assert "error" not in result, f"mint.mjs refused {request}: {result['error']}"
    return results


def mint_one(**request):
    return peer([request])[0]


def reference_verify(tokens, audience):
    """did-jwt's verifyJWT (did:key and did:pkh resolvers) on each token."""
    return peer([{"op": "verify", "jwt": t, "aud": audience} for t in tokens])


def token_request(kind="key-ed25519", **fields):
    """A mint request: a 600 s token for DID_AUD with one custom claim; a field
    given as None is left out (aud=None: no aud; ttl=None: no exp)."""
    request = {"kind": kind, "aud": DID_AUD, "ttl": 600, "claims": {"scope": "read"}}
    request.update(fields)
    return {k: v for k, v in request.items() if v is not None}


# -- taking tokens apart -------------------------------------------------------------


def b64url_decode(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parts(jwt):
    h, p, s = jwt.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p)), b64url_decode(s)


def with_header(jwt, **changes):
    header, _, rest = jwt.partition(".")
    fields = json.loads(b64url_decode(header))
    fields.update(changes)
    return b64url(json.dumps(fields, separators=(",", ":"))) + "." + rest


def with_payload(jwt, **changes):
    h, p, s = jwt.split(".")
    fields = json.loads(b64url_decode(p))
    fields.update(changes)
    return f"{h}.{b64url(json.dumps(fields, separators=(',', ':')))}.{s}"


def with_signature(jwt, change):
    h, p, s = jwt.split(".")
    return f"{h}.{p}.{b64url(change(bytearray(b64url_decode(s))))}"


def _flip_bit(sig):
    sig[len(sig) // 3] ^= 0x01
    return sig


def _high_s(sig):
    s = int.from_bytes(sig[32:64], "big")
    sig[32:64] = (SECP256K1_N - s).to_bytes(32, "big")
    return sig


def _flip_recid(sig):
    sig[64] ^= 0x01
    return sig


def _drop_recid(sig):
    return sig[:64]


def _alg_none(jwt):
    h, p, _ = with_header(jwt, alg="none").split(".")
    return f"{h}.{p}."


ALG_SWAP = {"EdDSA": "ES256K", "ES256K": "ES256K-R", "ES256": "ES256K", "ES256K-R": "ES256K"}


# -- the token tables ------------------------------------------------------------------
#
# Each case maps the time of minting to (requests, tamper): the requests go to
# the peer in one batch (the last one is the token; earlier ones are helpers
# that its templates refer to), and tamper, if any, rewrites the token.


class Case:
    def __init__(self, build, tamper=None, forged=False, fresh=False):
        self.build = build
        self.tamper = tamper
        self.forged = forged  # did-jwt's own verifier must refuse it too
        self.fresh = fresh  # minted right before use: its validity hinges on the clock


class Minted:
    def __init__(self, results, tamper):
        last = results[-1]
        self.original = last["jwt"]
        self.jwt = tamper(last["jwt"]) if tamper else last["jwt"]
        self.iss = last["iss"]
        self.did = last["did"]
        self.kid = last["kid"]


def mint_cases(table, names):
    """Mints the named cases of table in one peer run."""
    t = now()
    batch, spans = [], {}
    for name in names:
        requests = table[name].build(t)
        spans[name] = (len(batch), len(batch) + len(requests))
        batch.extend(requests)
    results = peer(batch) if batch else []
    return {name: Minted(results[a:b], table[name].tamper) for name, (a, b) in spans.items()}


def _kind_cases():
    cases = {}
    for kind in KINDS:
        cases[kind] = Case(lambda t, k=kind: [token_request(k)])
        cases[f"{kind}/kid"] = Case(lambda t, k=kind: [token_request(k, header={"kid": "{kid}"})])
    return cases


PASSING = {
    **_kind_cases(),
    "pkh-es256k-r/lowercase-address": Case(
        lambda t: [token_request("pkh-es256k-r", address_case="lower")]
    ),
    "pkh-es256k/lowercase-address": Case(
        lambda t: [token_request("pkh-es256k", address_case="lower")]
    ),
    "key-ed25519/kid-is-bare-did": Case(lambda t: [token_request(header={"kid": "{did}"})]),
    "aud-second-configured": Case(lambda t: [token_request(aud=DID_AUD_2)]),
    "aud-array-one-matches": Case(lambda t: [token_request(aud=["someone-else", DID_AUD])]),
    "no-iat": Case(lambda t: [token_request(drop=["iat"])]),
    "lifetime-exactly-max": Case(
        lambda t: [token_request(ttl=None, claims={"iat": t - 5, "exp": t - 5 + 3600})]
    ),
    "no-iat-exp-within-max": Case(
        lambda t: [token_request(ttl=None, drop=["iat"], claims={"exp": t + 3000})]
    ),
    "expired-within-leeway": Case(
        lambda t: [token_request(ttl=None, claims={"iat": t - 300, "exp": t - 30})], fresh=True
    ),
    "iat-within-leeway": Case(
        lambda t: [token_request(ttl=None, claims={"iat": t + 30, "exp": t + 630})], fresh=True
    ),
    "nbf-past": Case(lambda t: [token_request(claims={"nbf": t - 5})]),
    "extra-claims": Case(
        lambda t: [token_request(claims={"scope": "read write", "nested": {"a": [1, "b"]}})]
    ),
}


def _tamper_cases():
    cases = {}
    for kind in KINDS:
        build = lambda t, k=kind: [token_request(k, header={"kid": "{kid}"})]  # noqa: E731
        cases[f"{kind}/payload-claim-changed"] = Case(
            build, lambda j: with_payload(j, scope="admin"), forged=True
        )
        cases[f"{kind}/payload-exp-extended"] = Case(
            build, lambda j: with_payload(j, exp=parts(j)[1]["exp"] + 1), forged=True
        )
        cases[f"{kind}/signature-bit-flipped"] = Case(
            build, lambda j: with_signature(j, _flip_bit), forged=True
        )
        cases[f"{kind}/header-alg-swapped"] = Case(
            build, lambda j: with_header(j, alg=ALG_SWAP[parts(j)[0]["alg"]]), forged=True
        )
        cases[f"{kind}/header-alg-none"] = Case(build, _alg_none, forged=True)
        cases[f"{kind}/signature-truncated"] = Case(
            build, lambda j: with_signature(j, lambda s: s[:-8]), forged=True
        )
        cases[f"{kind}/signed-by-other-key"] = Case(
            lambda t, k=kind: [{"kind": k}, token_request(k, iss="{-1.did}")], forged=True
        )
    # s replaced by n - s: still a valid ECDSA signature. did-jwt's verifier
    # normalizes s and accepts it (its signer only makes low-S ones); ES256K
    # at the gateway takes low-S signatures only.
    cases["key-secp256k1/high-s"] = Case(
        lambda t: [token_request("key-secp256k1")], lambda j: with_signature(j, _high_s)
    )
    cases["pkh-es256k-r/recid-flipped"] = Case(
        lambda t: [token_request("pkh-es256k-r")],
        lambda j: with_signature(j, _flip_recid),
        forged=True,
    )
    # ES256K-R signatures are 65 bytes (r || s || recovery id). did-jwt's own
    # verifier tries both recovery ids for a 64-byte one, so it is not forged
    # for the reference; the gateway holds ES256K-R to its 65 bytes.
    cases["pkh-es256k-r/recid-dropped"] = Case(
        lambda t: [token_request("pkh-es256k-r")], lambda j: with_signature(j, _drop_recid)
    )
    # A key of one type presented as the DID of another type.
    cases["eddsa-signature-secp256k1-did-key"] = Case(
        lambda t: [{"kind": "key-secp256k1"}, token_request("key-ed25519", iss="{-1.did}")],
        forged=True,
    )
    cases["es256-signature-ed25519-did-key"] = Case(
        lambda t: [{"kind": "key-ed25519"}, token_request("key-p256", iss="{-1.did}")],
        forged=True,
    )
    cases["eddsa-signature-did-pkh"] = Case(
        lambda t: [{"kind": "pkh-es256k-r"}, token_request("key-ed25519", iss="{-1.did}")],
        forged=True,
    )
    return cases


REFUSED = {
    **_tamper_cases(),
    "expired": Case(lambda t: [token_request(ttl=None, claims={"iat": t - 900, "exp": t - 120})]),
    "expired-long-ago": Case(
        lambda t: [token_request(ttl=None, claims={"iat": t - 7200, "exp": t - 3600})]
    ),
    "lifetime-over-max": Case(
        lambda t: [token_request(ttl=None, claims={"iat": t, "exp": t + 7200})]
    ),
    "lifetime-one-second-over-max": Case(
        lambda t: [token_request(ttl=None, claims={"iat": t - 5, "exp": t - 5 + 3601})]
    ),
    "lifetime-a-day": Case(lambda t: [token_request(ttl=86400)]),
    "no-iat-exp-beyond-max": Case(
        lambda t: [token_request(ttl=None, drop=["iat"], claims={"exp": t + 3900})], fresh=True
    ),
    "old-iat-far-exp": Case(
        lambda t: [token_request(ttl=None, claims={"iat": t - 7200, "exp": t + 300})]
    ),
    "nbf-in-future": Case(lambda t: [token_request(claims={"nbf": t + 120})], fresh=True),
    "iat-in-future": Case(
        lambda t: [token_request(ttl=None, claims={"iat": t + 120, "exp": t + 700})], fresh=True
    ),
    "exp-missing": Case(lambda t: [token_request(ttl=None)]),
    "exp-not-a-number": Case(lambda t: [token_request(ttl=None, claims={"exp": "tomorrow"})]),
    "exp-missing-iat-only": Case(lambda t: [token_request(ttl=None, claims={"iat": t})]),
    "aud-missing": Case(lambda t: [token_request(aud=None)]),
    "aud-wrong": Case(lambda t: [token_request(aud="did:web:elsewhere.example")]),
    "aud-extended": Case(lambda t: [token_request(aud=DID_AUD + ".evil")]),
    "aud-truncated": Case(lambda t: [token_request(aud=DID_AUD[:-1])]),
    "aud-array-no-match": Case(lambda t: [token_request(aud=["a", "b"])]),
    "aud-empty-array": Case(lambda t: [token_request(aud=[])]),
    "aud-oidc-audience": Case(lambda t: [token_request(aud=DEFAULT_AUDIENCE)]),
    "not-allowed-pkh-chain-137": Case(lambda t: [token_request("pkh-es256k-r", chain="137")]),
    "not-allowed-pkh-es256k-chain-10": Case(lambda t: [token_request("pkh-es256k", chain="10")]),
    "kid-of-another-did-key": Case(
        lambda t: [{"kind": "key-ed25519"}, token_request(header={"kid": "{-1.kid}"})]
    ),
    "kid-of-another-did-pkh": Case(
        lambda t: [
            {"kind": "pkh-es256k-r"},
            token_request("pkh-es256k-r", header={"kid": "{-1.kid}"}),
        ]
    ),
    "kid-bare-other-did": Case(
        lambda t: [{"kind": "key-p256"}, token_request("key-p256", header={"kid": "{-1.did}"})]
    ),
    "kid-did-prefix-of-iss": Case(lambda t: [token_request(header={"kid": "did:key:#{did}"})]),
    "did-web": Case(
        lambda t: [
            token_request(iss="did:web:signer.example", header={"kid": "did:web:signer.example#k1"})
        ]
    ),
    "did-ethr": Case(lambda t: [token_request("pkh-es256k-r", iss="did:ethr:{address}")]),
    "did-ethr-with-chain": Case(
        lambda t: [token_request("pkh-es256k-r", iss="did:ethr:0x1:{address}")]
    ),
    "did-jwk": Case(lambda t: [token_request(iss="{jwk}")]),
    "did-pkh-malformed-address": Case(
        lambda t: [token_request("pkh-es256k-r", iss="did:pkh:eip155:1:0x1234")]
    ),
    "did-key-malformed": Case(lambda t: [token_request(iss="did:key:z0OIl-not-base58")]),
    "iss-http-url-not-configured": Case(
        lambda t: [token_request(iss="https://issuer.example", header={"kid": "{kid}"})]
    ),
}


@pytest.fixture(scope="module")
def minted(did_peer):
    """Every case that does not hinge on the clock, minted once for the module."""
    cache = {}

    def get(table, name):
        if table[name].fresh:
            return mint_cases(table, [name])[name]
        key = (id(table), name)
        if key not in cache:
            names = [n for n in table if not table[n].fresh]
            for n, m in mint_cases(table, names).items():
                cache[(id(table), n)] = m
        return cache[key]

    return get


# -- tokens that pass ------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(PASSING))
def test_did_token_passes_with_identity(gw, minted, case):
    token = minted(PASSING, case)
    resp = gw.get("/v1/items?page=2", token=token.jwt, headers={"User-Agent": USER_AGENT})
    rec = assert_passed(resp, gw.upstream, user_of(token.did), user_agent=USER_AGENT)
    assert rec.method == "GET" and rec.path == "/v1/items?page=2"


def test_session_without_user_agent(gw, minted):
    token = minted(PASSING, "pkh-es256k-r")
    assert_passed(gw.get("/", token=token.jwt), gw.upstream, user_of(token.did))
    expected = hashlib.sha256(f"{user_of(token.did)}:".encode()).hexdigest()[:16]
    assert gw.upstream.last().header("x-attach-session") == expected


def test_same_did_token_twice_passes_both_times(gw, minted):
    token = minted(PASSING, "key-p256")
    for _ in range(2):
        gw.upstream.clear()
        assert_passed(gw.get("/", token=token.jwt), gw.upstream, user_of(token.did))


def test_identity_headers_from_client_are_replaced(gw, minted):
    token = minted(PASSING, "key-secp256k1")
    headers = [
        ("X-Attach-User", "did:key:z6MkAttacker"),
        ("X-Attach-Session", "0000000000000000"),
        ("Authorization", f"Bearer {token.jwt}"),
    ]
    assert_passed(gw.get("/", headers=headers), gw.upstream, user_of(token.did))


def test_tampered_token_fails_after_its_original_passed(gw, minted):
    """A verified token may be cached by value: a tampered copy of a token that
    has just passed must still be checked, and refused."""
    token = minted(REFUSED, "key-ed25519/payload-claim-changed")
    assert_passed(gw.get("/", token=token.original), gw.upstream, user_of(token.did))
    gw.upstream.clear()
    assert_refused(gw.get("/", token=token.jwt), gw.resource, 401, "invalid_token")
    assert gw.upstream.requests == []


# -- tokens refused --------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_did_token_is_refused(gw, minted, case):
    token = minted(REFUSED, case)
    resp = gw.get("/v1/items", token=token.jwt)
    assert_refused(resp, gw.resource, 401, "invalid_token")
    assert gw.upstream.requests == [], "a refused request reached the upstream"


def test_oidc_token_refused_when_no_issuer_is_configured(gw):
    """Only DID sign-in is configured: a well-formed token from an OpenID
    provider the gateway does not trust is invalid."""
    resp = gw.get("/", token=gw.token())
    assert_refused(resp, gw.resource, 401, "invalid_token")
    assert gw.upstream.requests == []


def test_no_token_is_challenged_without_error(gw):
    assert_refused(gw.get("/v1/items"), gw.resource, 401, None)
    assert gw.upstream.requests == []


# -- the reference library's view of the same tokens ------------------------------------------


def test_reference_library_accepts_every_passing_token(minted):
    names = sorted(PASSING)
    tokens = [minted(PASSING, n) for n in names]
    jwts = [t.jwt for t in tokens]
    refused = {}
    checks = zip(names, tokens, reference_verify(jwts, DID_AUD), reference_verify(jwts, DID_AUD_2))
    for name, token, first, second in checks:
        check = first if first["verified"] else second
        if check["verified"]:
            assert check["issuer"] == token.did, (name, check)
        else:
            refused[name] = (first["reason"], second["reason"])
    assert refused == {}, f"did-jwt refuses tokens the gateway must accept: {refused}"


def test_reference_library_refuses_every_forged_token(minted):
    names = sorted(n for n, c in REFUSED.items() if c.forged)
    tokens = [minted(REFUSED, n) for n in names]
    checks = reference_verify([t.jwt for t in tokens], DID_AUD)
    accepted = [n for n, check in zip(names, checks) if check["verified"]]
    assert accepted == [], f"did-jwt accepts tokens meant to be forged: {accepted}"
    # ... while the untampered originals verify.
    originals = reference_verify([t.original for t in tokens if t.original != t.jwt], DID_AUD)
    assert all(c["verified"] for c in originals), originals


def test_peer_derives_dids_independently_checked(did_peer):
    """The peer's DIDs against a second derivation: did:key from the public
    key that Python's cryptography computes for the same private key
    (multicodec prefix, base58btc), did:pkh against a published Ethereum
    address (EIP-55 checksum)."""
    eth_key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    seed = "2f" * 32
    pkh, pkh_lower, ed, k1, p256 = did_peer(
        [
            {"kind": "pkh-es256k-r", "seed": eth_key},
            {"kind": "pkh-es256k", "seed": eth_key, "address_case": "lower", "chain": "137"},
            {"kind": "key-ed25519", "seed": seed},
            {"kind": "key-secp256k1", "seed": seed},
            {"kind": "key-p256", "seed": seed},
        ]
    )
    assert pkh["did"] == "did:pkh:eip155:1:0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    assert pkh_lower["did"] == "did:pkh:eip155:137:0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"

    raw, compressed = serialization.Encoding.Raw, serialization.Encoding.X962
    ed_public = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed)).public_key()
    expected = {
        "did:key:z6Mk": (
            ed,
            b"\xed\x01",
            ed_public.public_bytes(raw, serialization.PublicFormat.Raw),
        ),
    }
    for result, curve, prefix, did_prefix in (
        (k1, ec.SECP256K1(), b"\xe7\x01", "did:key:zQ3s"),
        (p256, ec.SECP256R1(), b"\x80\x24", "did:key:zDn"),
    ):
        public = ec.derive_private_key(int(seed, 16), curve).public_key()
        expected[did_prefix] = (
            result,
            prefix,
            public.public_bytes(compressed, serialization.PublicFormat.CompressedPoint),
        )
    for did_prefix, (result, prefix, public) in expected.items():
        assert result["public_key"] == public.hex(), result
        assert result["did"] == did_key(prefix, public), result
        assert result["did"].startswith(did_prefix), result
        assert result["kid"] == result["did"] + "#" + result["did"].split(":")[2], result


# -- `attach token` -----------------------------------------------------------------------------


def attach_token(gateway):
    """Runs `attach token` with the gateway's environment; returns (token, stderr)."""
    rc, out, err = run_launcher(["token"], gateway.env(), cwd=gateway.workdir)
    assert rc == 0, f"`attach token` exited {rc}\nstdout: {out}\nstderr: {err}"
    token = out.strip()
    assert JWS.fullmatch(token), f"`attach token` printed no compact JWS: {out!r}"
    return token, err


def check_attach_token(stack, token, audiences, max_ttl):
    """The token is an EdDSA did:key token for one of audiences, within
    max_ttl, accepted by did-jwt and by the gateway; returns its DID."""
    header, claims, _ = parts(token)
    did = claims.get("iss")
    assert header.get("alg") == "EdDSA", header
    assert isinstance(did, str) and did.startswith("did:key:z6Mk"), claims
    assert "kid" not in header or header["kid"].split("#")[0] == did, header
    aud = claims.get("aud")
    assert aud in audiences or (isinstance(aud, list) and set(aud) & set(audiences)), claims
    t = now()
    assert isinstance(claims.get("exp"), int) and claims["exp"] > t, claims
    start = claims.get("iat", t)
    assert claims["exp"] - start <= max_ttl, claims
    audience = aud if isinstance(aud, str) else next(a for a in aud if a in audiences)
    (check,) = reference_verify([token], audience)
    assert check["verified"] and check["issuer"] == did, check

    stack.upstream.clear()
    resp = stack.get("/v1/me", token=token, headers={"User-Agent": USER_AGENT})
    assert_passed(resp, stack.upstream, user_of(did), user_agent=USER_AGENT)
    return did


def test_attach_token_is_accepted_and_identity_is_kept(gw, did_peer):
    identity = gw.gateway.data_dir / "identity.json"
    assert not identity.exists(), "identity.json exists before `attach token` ran"

    first, _ = attach_token(gw.gateway)
    assert identity.is_file(), f"no {identity} after `attach token`"
    mode = stat.S_IMODE(os.stat(identity).st_mode)
    assert mode == 0o600, f"{identity} has mode {mode:o}, not 600"
    saved = identity.read_bytes()
    audiences, max_ttl = DID_SECTION["audiences"], DID_SECTION["max_ttl_secs"]
    did = check_attach_token(gw, first, audiences, max_ttl)

    second, _ = attach_token(gw.gateway)
    assert check_attach_token(gw, second, audiences, max_ttl) == did, "a new identity was made"
    assert identity.read_bytes() == saved, "identity.json changed on the second call"
    assert stat.S_IMODE(os.stat(identity).st_mode) == 0o600


def test_attach_token_identity_belongs_to_the_data_dir(tmp_path, artifacts, did_peer):
    dids = []
    for name in ("a", "b"):
        gateway = Gateway(
            tmp_path / name, engine_url="http://127.0.0.1:9", resource=None, env=NO_DID_ENV
        )
        gateway.data_dir.mkdir(parents=True)
        token, _ = attach_token(gateway)
        dids.append(parts(token)[1]["iss"])
        assert (gateway.data_dir / "identity.json").is_file()
    assert dids[0] != dids[1], "two data folders share one identity"


# -- OIDC and DID side by side ------------------------------------------------------------------


def test_oidc_and_did_tokens_are_routed_by_issuer(make_stack, did_peer):
    s = make_stack(config={"did": dict(DID_SECTION, open=True)}, env=NO_DID_ENV)
    # OIDC: the provider's keys are fetched before the first token passes.
    assert_passed(s.get("/", token=s.token()), s.upstream, "user-42")
    fetches = s.idp.jwks_fetches

    tokens = peer([token_request(k, header={"kid": "{kid}"}) for k in KINDS])
    for token in tokens:
        s.upstream.clear()
        assert_passed(s.get("/", token=token["jwt"]), s.upstream, user_of(token["did"]))
    assert s.idp.jwks_fetches == fetches, "a DID token made the gateway fetch the provider's keys"

    did = tokens[0]["did"]
    refused = {
        # Signed by the provider's key, but claiming a DID as issuer.
        "provider-key-did-iss": s.token(iss=did, aud=DID_AUD),
        # Signed by a DID key, but claiming the provider as issuer.
        "did-key-provider-iss": mint_one(
            **token_request(iss=s.idp.issuer, aud=DEFAULT_AUDIENCE, header={"kid": "{kid}"})
        )["jwt"],
        "did-key-provider-iss-no-kid": mint_one(
            **token_request(iss=s.idp.issuer, aud=DEFAULT_AUDIENCE)
        )["jwt"],
        # A DID token for the provider's audience, and a provider token for the DID audience.
        "did-token-oidc-audience": mint_one(**token_request(aud=DEFAULT_AUDIENCE))["jwt"],
        "provider-token-did-audience": s.token(aud=DID_AUD),
        "neither-issuer": mint_one(**token_request(iss="https://other-issuer.example"))["jwt"],
    }
    for name, token in refused.items():
        s.upstream.clear()
        resp = s.get("/", token=token)
        assert resp.status == 401, f"{name}: {resp!r}"
        assert_refused(resp, s.resource, 401, "invalid_token")
        assert s.upstream.requests == [], name

    s.upstream.clear()
    assert_passed(s.get("/", token=s.token(sub="after")), s.upstream, "after")


def test_did_tokens_pass_while_the_provider_is_down(make_stack, did_peer):
    """DID tokens are verified from the DID alone: an unreachable OpenID
    provider does not hold them up."""
    s = make_stack(
        idp_up=False,
        config={"did": dict(DID_SECTION, open=True), "jwks": {"wait_ms": 300}},
        env=NO_DID_ENV,
    )
    for token in peer([token_request(k) for k in KINDS]):
        s.upstream.clear()
        started = time.monotonic()
        assert_passed(s.get("/", token=token["jwt"]), s.upstream, user_of(token["did"]))
        assert time.monotonic() - started < 2


def test_unsupported_did_methods_refused_even_when_allowed(make_stack, did_peer):
    """allow: did:* lets every DID through the allow-list; only did:key and
    did:pkh:eip155 can be verified without a network, so the others are
    refused although their signatures are good for their own methods."""
    s = make_stack(
        provider="config",
        idp_up=False,
        config={"did": {"audiences": [DID_AUD], "allow": ["did:*"]}},
        env=NO_DID_ENV,
    )
    (control,) = peer([token_request("pkh-es256k", chain="137")])
    assert_passed(s.get("/", token=control["jwt"]), s.upstream, user_of(control["did"]))
    requests = {
        "did-web": token_request(
            iss="did:web:signer.example", header={"kid": "did:web:signer.example#k1"}
        ),
        "did-ethr": token_request("pkh-es256k-r", iss="did:ethr:{address}"),
        "did-ethr-with-chain": token_request("pkh-es256k-r", iss="did:ethr:0x1:{address}"),
        "did-jwk": token_request(iss="{jwk}", header={"kid": "{jwk}#0"}),
        "did-pkh-bip122": token_request(
            "pkh-es256k-r", iss="did:pkh:bip122:000000000019d6689c085ae165831e93:{address}"
        ),
        "did-example": token_request(iss="did:example:123456789abcdefghi"),
        "did-key-unknown-multicodec": token_request(
            iss="did:key:z6LSeu9HkTHSfLLeUs2nnzUSNedgDUevfNQgQjQC23ZCit6F"
        ),
    }
    tokens = dict(zip(requests, peer(list(requests.values()))))
    for name, token in tokens.items():
        s.upstream.clear()
        resp = s.get("/", token=token["jwt"])
        assert resp.status == 401, f"{name}: {resp!r}"
        assert_refused(resp, s.resource, 401, "invalid_token")
        assert s.upstream.requests == [], name


def test_allow_list_of_exact_dids(make_stack, did_peer):
    allowed, other = peer([token_request("key-ed25519"), token_request("key-ed25519")])
    pkh, pkh_other = peer([token_request("pkh-es256k-r"), token_request("pkh-es256k-r")])
    s = make_stack(
        provider="config",
        idp_up=False,
        config={"did": {"audiences": [DID_AUD], "allow": [allowed["did"], pkh["did"]]}},
        env=NO_DID_ENV,
    )
    for token in (allowed, pkh):
        s.upstream.clear()
        assert_passed(s.get("/", token=token["jwt"]), s.upstream, user_of(token["did"]))
    for token in (other, pkh_other):
        s.upstream.clear()
        assert_refused(s.get("/", token=token["jwt"]), s.resource, 401, "invalid_token")
        assert s.upstream.requests == []


# -- configuration through the environment -------------------------------------------------------


def test_local_stack_defaults(make_stack, did_peer):
    """No ATTACH_CONFIG, no OIDC issuer, no DID_* variable: DID sign-in is on
    for the gateway's own base URL, any did:key or did:pkh, one hour at most;
    `attach token` signs for that audience."""
    s = make_stack(provider="config", idp_up=False, resource=None, env=NO_DID_ENV)
    base = s.gateway.base_url
    t = now()
    passing = peer(
        [
            token_request("key-ed25519", aud=base),
            token_request("key-p256", aud=base, header={"kid": "{kid}"}),
            token_request("pkh-es256k-r", aud=base, chain="137"),
            token_request("pkh-es256k", aud=base, chain="10"),
            token_request(
                "key-secp256k1", aud=base, ttl=None, claims={"iat": t - 5, "exp": t - 5 + 3600}
            ),
        ]
    )
    for token in passing:
        s.upstream.clear()
        assert_passed(s.get("/", token=token["jwt"]), s.upstream, user_of(token["did"]))
    refused = peer(
        [
            token_request("key-ed25519", aud=DEFAULT_AUDIENCE),
            token_request("key-ed25519", aud=DID_AUD),
            token_request("key-ed25519", aud=None),
            token_request("key-ed25519", aud=base, ttl=None, claims={"iat": t, "exp": t + 7200}),
        ]
    )
    for token in refused:
        s.upstream.clear()
        assert_refused(s.get("/", token=token["jwt"]), s.resource, 401, "invalid_token")
        assert s.upstream.requests == []
    assert_refused(s.get("/", token=s.token()), s.resource, 401, "invalid_token")

    token, _ = attach_token(s.gateway)
    check_attach_token(s, token, [base], 3600)


def test_oidc_audience_is_the_did_audience_by_default(make_stack, did_peer):
    # Next to an OIDC issuer, DID sign-in is on only when DID_ALLOW asks for it.
    s = make_stack(resource=None, env=dict(NO_DID_ENV, DID_ALLOW="did:key:*,did:pkh:*"))
    good, base_aud = peer(
        [token_request(aud=DEFAULT_AUDIENCE), token_request(aud=s.gateway.base_url)]
    )
    assert_passed(s.get("/", token=good["jwt"]), s.upstream, user_of(good["did"]))
    s.upstream.clear()
    assert_refused(s.get("/", token=base_aud["jwt"]), s.resource, 401, "invalid_token")
    assert s.upstream.requests == []
    assert_passed(s.get("/", token=s.token()), s.upstream, "user-42")


def test_did_environment_variables(make_stack, did_peer):
    """DID_AUD, DID_ALLOW (comma-separated, exact DIDs and prefixes) and
    DID_MAX_TTL configure DID sign-in next to an OIDC provider."""
    exact = mint_one(kind="key-ed25519", seed="17" * 32)
    aud = "did:web:env.attach.test"
    s = make_stack(
        resource=None,
        env={
            "DID_AUD": aud,
            "DID_ALLOW": f"did:pkh:eip155:1:*, {exact['did']}",
            "DID_MAX_TTL": "120",
        },
    )
    t = now()
    passing = peer(
        [
            token_request("key-ed25519", seed="17" * 32, aud=aud, ttl=120),
            token_request("pkh-es256k-r", aud=aud, ttl=60),
            token_request("pkh-es256k", aud=aud, ttl=None, claims={"iat": t, "exp": t + 120}),
        ]
    )
    assert passing[0]["did"] == exact["did"]
    for token in passing:
        s.upstream.clear()
        assert_passed(s.get("/", token=token["jwt"]), s.upstream, user_of(token["did"]))

    refused = {
        "lifetime-over-DID_MAX_TTL": token_request("pkh-es256k-r", aud=aud, ttl=300),
        "lifetime-just-over": token_request(
            "pkh-es256k-r", aud=aud, ttl=None, claims={"iat": t, "exp": t + 121}
        ),
        "other-did-key": token_request("key-ed25519", aud=aud, ttl=60),
        "pkh-other-chain": token_request("pkh-es256k-r", aud=aud, ttl=60, chain="137"),
        "aud-OIDC_AUD": token_request("key-ed25519", seed="17" * 32, aud=DEFAULT_AUDIENCE, ttl=60),
        "aud-base-url": token_request(
            "key-ed25519", seed="17" * 32, aud=s.gateway.base_url, ttl=60
        ),
    }
    for name, token in zip(refused, peer(list(refused.values()))):
        s.upstream.clear()
        resp = s.get("/", token=token["jwt"])
        assert resp.status == 401, f"{name}: {resp!r}"
        assert_refused(resp, s.resource, 401, "invalid_token")
        assert s.upstream.requests == [], name

    s.upstream.clear()
    assert_passed(s.get("/", token=s.token()), s.upstream, "user-42")

    # `attach token` signs for DID_AUD within DID_MAX_TTL, and its did:key
    # identity is not on this allow-list.
    token, _ = attach_token(s.gateway)
    claims = parts(token)[1]
    assert claims["aud"] == aud or aud in claims["aud"], claims
    assert claims["exp"] - claims.get("iat", now()) <= 120, claims
    s.upstream.clear()
    assert_refused(s.get("/", token=token), s.resource, 401, "invalid_token")
    assert s.upstream.requests == []


def test_attach_token_follows_did_environment(make_stack, did_peer):
    aud = "https://env.attach.test/gw"
    s = make_stack(
        provider="config",
        idp_up=False,
        resource=None,
        env={"DID_AUD": aud, "DID_ALLOW": "did:key:*", "DID_MAX_TTL": "90"},
    )
    token, _ = attach_token(s.gateway)
    check_attach_token(s, token, [aud], 90)


BAD_DID_ENV = {
    "max-ttl-not-a-number": ("DID_MAX_TTL", {"DID_MAX_TTL": "1h"}),
    "max-ttl-zero": ("DID_MAX_TTL", {"DID_MAX_TTL": "0"}),
    "max-ttl-negative": ("DID_MAX_TTL", {"DID_MAX_TTL": "-5"}),
    "allow-not-a-did": ("DID_ALLOW", {"DID_ALLOW": "key:*"}),
    "allow-star-inside": ("DID_ALLOW", {"DID_ALLOW": "did:key:*,did:*:x*"}),
    "file-did-audiences-empty": (
        "ATTACH_CONFIG",
        {"config": {"did": {"audiences": [], "allow": ["did:key:*"]}}},
    ),
    "file-did-allow-not-a-did": (
        "ATTACH_CONFIG",
        {"config": {"did": {"audiences": [DID_AUD], "allow": ["key:*"]}}},
    ),
    "file-did-max-ttl-zero": (
        "ATTACH_CONFIG",
        {"config": {"did": {"audiences": [DID_AUD], "allow": ["did:key:*"], "max_ttl_secs": 0}}},
    ),
    "file-did-unknown-field": (
        "ATTACH_CONFIG",
        {"config": {"did": {"audiences": [DID_AUD], "allow": ["did:key:*"], "bogus": 1}}},
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DID_ENV))
def test_bad_did_setting_exits_2_naming_it(tmp_path, artifacts, case):
    variable, overrides = BAD_DID_ENV[case]
    config = overrides.get("config")
    gateway = Gateway(
        tmp_path / "gw", engine_url="http://127.0.0.1:9", config=config, env=NO_DID_ENV
    )
    env = gateway.env()
    env.update({k: v for k, v in overrides.items() if k != "config"})
    for command in ("run", "token"):
        rc, out, err = run_launcher([command], env, cwd=gateway.workdir)
        assert rc == 2, f"{command}: exit {rc}\nstdout: {out}\nstderr: {err}"
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"{command}: expected one line on stderr, got: {err!r}"
        assert variable in lines[0], f"{command}: {variable} not named in: {lines[0]!r}"
    assert not (gateway.data_dir / "identity.json").exists()
