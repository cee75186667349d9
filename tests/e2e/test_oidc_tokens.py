"""Bearer tokens from an OIDC provider: what passes, and every way a token is refused.

Each refusal must be a 401 with the Bearer challenge, a short JSON body that
leaks nothing, and no request at the upstream.
"""

import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils

from httpc import ANY_ERROR, assert_passed, assert_refused
from idp import ALL_ALGS, DEFAULT_AUDIENCE, SigningKey, b64url, hmac_signer

SECOND_AUDIENCE = "attach-admin"

STACK = dict(keys=ALL_ALGS, audiences=(DEFAULT_AUDIENCE, SECOND_AUDIENCE))

UNKNOWN_KID = "kid-nobody-published-7f3a"

# Keys the IdP never publishes, made once for the module (RSA generation is slow).
_STRAY = {}


def stray(alg):
    if alg not in _STRAY:
        _STRAY[alg] = SigningKey(alg, kid=UNKNOWN_KID)
    return _STRAY[alg]


def now():
    return int(time.time())


# -- tokens that pass -----------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_valid_token_passes_with_identity(gw, alg):
    sub = f"user-{alg.lower()}"
    token = gw.token(gw.idp.key_for(alg), sub=sub)
    resp = gw.get("/v1/items?page=2", token=token)
    rec = assert_passed(resp, gw.upstream, sub)
    assert rec.method == "GET" and rec.path == "/v1/items?page=2"
    # forward_authorization is off by default: the credential stops at the
    # gateway, the upstream gets the identity instead.
    assert rec.header_values("authorization") == []


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_scheme_is_case_insensitive(gw, scheme):
    resp = gw.get("/", headers={"Authorization": f"{scheme} {gw.token()}"})
    assert_passed(resp, gw.upstream, "user-42")


def test_post_body_reaches_upstream(gw):
    resp = gw.request(
        "POST",
        "/v1/items",
        token=gw.token(),
        body='{"name":"x"}',
        headers={"Content-Type": "application/json"},
    )
    rec = assert_passed(resp, gw.upstream, "user-42")
    assert rec.method == "POST" and rec.body == b'{"name":"x"}'


PASSING_CLAIMS = {
    "aud-array-intersects": lambda idp: {"aud": ["someone-else", DEFAULT_AUDIENCE]},
    "second-configured-audience": lambda idp: {"aud": SECOND_AUDIENCE},
    "aud-array-of-one": lambda idp: {"aud": [SECOND_AUDIENCE]},
    "issuer-trailing-slash": lambda idp: {"iss": idp.issuer + "/"},
    # Default leeway is 60 s; the refused side of each edge is in INVALID.
    "expired-within-leeway": lambda idp: {"exp": now() - 45},
    "nbf-within-leeway": lambda idp: {"nbf": now() + 45},
    "iat-within-leeway": lambda idp: {"iat": now() + 45},
    "nbf-past": lambda idp: {"nbf": now() - 5},
    "no-iat": lambda idp: {"iat": None},
    "extra-claims": lambda idp: {"scope": "read write", "email": "a@example.com", "nested": {"a": [1]}},
}


@pytest.mark.parametrize("case", sorted(PASSING_CLAIMS))
def test_claim_variants_that_pass(gw, case):
    claims = PASSING_CLAIMS[case](gw.idp)
    drop = [k for k, v in claims.items() if v is None]
    claims = {k: v for k, v in claims.items() if v is not None}
    resp = gw.get("/", token=gw.token(drop=drop, **claims))
    assert_passed(resp, gw.upstream, "user-42")


def test_access_token_typ_passes(gw):
    resp = gw.get("/", token=gw.token(headers={"typ": "at+jwt"}))
    assert_passed(resp, gw.upstream, "user-42")


def test_token_just_under_size_cap_passes(gw):
    token = _padded_token(gw.idp, 8000)
    assert len(token) <= 8192
    assert_passed(gw.get("/", token=token), gw.upstream, "user-42")


def _padded_token(idp, length):
    """A valid RS256 token at most length characters long and at most 3 short of it."""
    lo, hi = 0, length
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(idp.token(pad="x" * mid, jti="padded")) <= length:
            lo = mid
        else:
            hi = mid - 1
    token = idp.token(pad="x" * lo, jti="padded")
    assert length - 3 <= len(token) <= length
    return token


# -- tokens refused as invalid ---------------------------------------------------


def _flip(segment, index):
    chars = list(segment)
    chars[index] = "A" if chars[index] != "A" else "B"
    return "".join(chars)


def _bad_signature(idp):
    h, p, s = idp.token().split(".")
    return f"{h}.{p}.{_flip(s, len(s) // 2)}"


def _truncated_signature(idp):
    h, p, s = idp.token().split(".")
    return f"{h}.{p}.{s[: len(s) // 2]}"


def _payload_tampered(idp):
    h, _, s = idp.token().split(".")
    return f"{h}.{b64url(json.dumps(idp.claims(sub='admin')))}.{s}"


def _der_es256(idp):
    key = idp.key_for("ES256")
    header = {"alg": "ES256", "typ": "JWT", "kid": key.kid}
    return idp.forged(header, signer=lambda data: key.private.sign(data, ec.ECDSA(hashes.SHA256())))


def _es256_high_s(idp):
    """A valid ES256 signature with s replaced by n - s (malleated, still mathematically valid)."""
    key = idp.key_for("ES256")
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

    def signer(data):
        r, s = asym_utils.decode_dss_signature(key.private.sign(data, ec.ECDSA(hashes.SHA256())))
        if s <= n // 2:
            s = n - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return idp.forged({"alg": "ES256", "typ": "JWT", "kid": key.kid}, signer=signer)


def _hs_confusion(alg, pem_format):
    def build(idp):
        key = idp.key_for("RS256")
        header = {"alg": alg, "typ": "JWT", "kid": key.kid}
        return idp.forged(header, signer=hmac_signer(key.public_pem(pem_format), alg))

    return build


def _alg_mismatch(header_alg, published_alg):
    """The header names header_alg, the kid points at a published key of another
    family, and the signature is made with an unpublished key of header_alg's family."""

    def build(idp):
        published = idp.key_for(published_alg)
        header = {"alg": header_alg, "typ": "JWT", "kid": published.kid}
        return idp.forged(header, key=stray(header_alg))

    return build


def _none_alg(name, with_kid=True):
    def build(idp):
        header = {"alg": name, "typ": "JWT"}
        if with_kid:
            header["kid"] = idp.key.kid
        return idp.forged(header, signer=False)

    return build


def _signed_payload(raw):
    def build(idp):
        return idp.forged({"alg": "RS256", "typ": "JWT", "kid": idp.key.kid}, raw)

    return build


INVALID = {
    "not-a-jwt": lambda idp: "abc",
    "two-segments": lambda idp: ".".join(idp.token().split(".")[:2]),
    "five-segments": lambda idp: idp.token() + ".x.y",
    "empty-segments": lambda idp: "..",
    # '+', '/' and '=' may appear in a Bearer credential but not in base64url.
    "bad-base64-header": lambda idp: "ab+/cd." + idp.token().split(".", 1)[1],
    "bad-base64-payload": lambda idp: idp.token().split(".")[0] + ".e30+/x." + "c2ln",
    "bad-base64-signature": lambda idp: idp.token().rsplit(".", 1)[0] + ".ab/+cd==",
    "base64-padding-inside": lambda idp: "e30=.e30=.c2ln",
    "header-not-json": lambda idp: b64url("not json") + "." + idp.token().split(".", 1)[1],
    "header-json-array": lambda idp: b64url("[1,2]") + "." + idp.token().split(".", 1)[1],
    "payload-not-json": _signed_payload(b"{not json"),
    "payload-json-array": _signed_payload(b'["sub"]'),
    "bad-signature": _bad_signature,
    "truncated-signature": _truncated_signature,
    "payload-tampered": _payload_tampered,
    "signed-by-other-key-same-kid": lambda idp: idp.forged(
        {"alg": "RS256", "typ": "JWT", "kid": idp.key.kid}, key=stray("RS256")
    ),
    "es256-der-signature": _der_es256,
    "unknown-kid": lambda idp: idp.token(key=stray("RS256")),
    "expired": lambda idp: idp.token(exp=now() - 75),
    "expired-long-ago": lambda idp: idp.token(iat=now() - 7200, exp=now() - 3600),
    "exp-missing": lambda idp: idp.token(drop=["exp"]),
    "exp-not-a-number": lambda idp: idp.forged(
        {"alg": "RS256", "typ": "JWT", "kid": idp.key.kid}, idp.claims(exp="tomorrow")
    ),
    "nbf-in-future": lambda idp: idp.token(nbf=now() + 75),
    "iat-in-future": lambda idp: idp.token(iat=now() + 75),
    "wrong-aud": lambda idp: idp.token(aud="someone-else"),
    "aud-array-no-match": lambda idp: idp.token(aud=["a", "b"]),
    "aud-missing": lambda idp: idp.token(drop=["aud"]),
    "aud-empty-array": lambda idp: idp.token(aud=[]),
    "sub-missing": lambda idp: idp.token(drop=["sub"]),
    "iss-missing": lambda idp: idp.token(drop=["iss"]),
    "unknown-issuer": lambda idp: idp.token(iss="http://127.0.0.1:9/elsewhere"),
    "issuer-prefix-trick": lambda idp: idp.token(iss=idp.issuer + ".evil"),
    "alg-none": _none_alg("none"),
    "alg-None": _none_alg("None"),
    "alg-NONE-no-kid": _none_alg("NONE", with_kid=False),
    "hs256-with-rsa-public-pem": _hs_confusion("HS256", "spki"),
    "hs256-with-rsa-pkcs1-pem": _hs_confusion("HS256", "pkcs1"),
    "hs384-with-rsa-public-pem": _hs_confusion("HS384", "spki"),
    "hs512-with-rsa-public-pem": _hs_confusion("HS512", "spki"),
    "es256-header-rsa-key": _alg_mismatch("ES256", "RS256"),
    "rs256-header-ec-key": _alg_mismatch("RS256", "ES256"),
    "es384-header-p256-key": _alg_mismatch("ES384", "ES256"),
    "es256-header-p384-key": _alg_mismatch("ES256", "ES384"),
    "eddsa-header-rsa-key": _alg_mismatch("EdDSA", "RS256"),
    "rs256-header-eddsa-key": _alg_mismatch("RS256", "EdDSA"),
    "alg-missing": lambda idp: idp.forged({"typ": "JWT", "kid": idp.key.kid}),
    "oversized": lambda idp: _padded_token(idp, 9000),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_token_is_refused(gw, case):
    token = INVALID[case](gw.idp)
    resp = gw.get("/v1/items", headers={"Authorization": f"Bearer {token}"})
    kids = [k.kid for k in gw.idp.keys] + [UNKNOWN_KID]
    assert_refused(resp, gw.resource, 401, "invalid_token", secrets=kids)
    assert gw.upstream.requests == [], "a refused request reached the upstream"


def test_es256_high_s_signature_is_consistent(gw):
    """ECDSA signatures are malleable; whichever way the filter decides, it must
    decide without crashing and answer either 200 or the invalid_token challenge."""
    resp = gw.get("/", token=_es256_high_s(gw.idp))
    if resp.status == 200:
        assert_passed(resp, gw.upstream, "user-42")
    else:
        assert_refused(resp, gw.resource, 401, "invalid_token")
        assert gw.upstream.requests == []


# -- no token at all ---------------------------------------------------------------

NO_TOKEN = {
    "no-authorization-header": lambda idp: [],
    # RFC 6750 3.1: an unsupported authentication method carries no error code.
    "basic-scheme": lambda idp: [("Authorization", "Basic dXNlcjpwYXNzd29yZA==")],
    "token-scheme": lambda idp: [("Authorization", f"Token {idp.token()}")],
    "token-in-other-header": lambda idp: [("X-Access-Token", idp.token())],
}


@pytest.mark.parametrize("case", sorted(NO_TOKEN))
def test_missing_token_is_challenged_without_error(gw, case):
    resp = gw.get("/v1/items", headers=NO_TOKEN[case](gw.idp))
    assert_refused(resp, gw.resource, 401, None)
    assert gw.upstream.requests == []


@pytest.mark.parametrize(
    "token", ["*!*.e30.c2ln", "abc.def.@@@@", "a b.c.d", "abc.def.gh,i"]
)
def test_token_with_characters_outside_bearer_syntax_is_refused(gw, token):
    """Not a b64token (RFC 6750 2.1), but presented: an invalid_token challenge
    (not the no-token one), and nothing goes upstream."""
    resp = gw.get("/v1/items", headers=[("Authorization", f"Bearer {token}")])
    assert_refused(resp, gw.resource, 401, "invalid_token")
    assert gw.upstream.requests == []


def test_token_in_query_string_is_not_accepted(gw):
    resp = gw.get(f"/v1/items?access_token={gw.token()}")
    assert_refused(resp, gw.resource, 401, None)
    assert gw.upstream.requests == []


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer    "])
def test_empty_bearer_is_refused(gw, value):
    resp = gw.get("/v1/items", headers=[("Authorization", value)])
    assert_refused(resp, gw.resource, 401, ANY_ERROR)
    assert gw.upstream.requests == []


def test_refusals_do_not_poison_valid_tokens(gw):
    """After a burst of bad tokens for the same kid, a good one still passes."""
    for case in ("bad-signature", "alg-none", "hs256-with-rsa-public-pem", "expired"):
        assert gw.get("/", token=INVALID[case](gw.idp)).status == 401
    gw.upstream.clear()
    assert_passed(gw.get("/", token=gw.token()), gw.upstream, "user-42")


def test_same_token_twice_passes_both_times(gw):
    token = gw.token(sub="repeat-user")
    for _ in range(2):
        gw.upstream.clear()
        assert_passed(gw.get("/", token=token), gw.upstream, "repeat-user")


def test_configured_leeway_and_cached_token_expiry(make_stack):
    """leeway_secs is honoured, and a token that passed once (and may be cached)
    is refused once it expires."""
    s = make_stack(config={"leeway_secs": 1})
    resp = s.get("/", token=s.token(exp=now() - 10))
    assert_refused(resp, s.resource, 401, "invalid_token")
    assert s.upstream.requests == []

    token = s.token(sub="short-lived", exp=now() + 2)
    assert_passed(s.get("/", token=token), s.upstream, "short-lived")
    time.sleep(4.5)
    s.upstream.clear()
    assert_refused(s.get("/", token=token), s.resource, 401, "invalid_token")
    assert s.upstream.requests == []
