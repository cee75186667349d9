"""The identity token the gateway signs for every request it lets through
(`X-Attach-Identity`), checked the way an upstream would: with a standard
JWT library (PyJWT and its PyJWKClient) that knows nothing but the gateway's
issuer URL, finding the keys through `/.well-known/openid-configuration`
(OpenID Connect Discovery 1.0 section 4) and the JWKS (RFC 7517 section 5),
then verifying the JWT (RFC 7519 section 7.2, RFC 7515 with RFC 8037's
EdDSA, or RFC 7518's ES256 with ATTACH_SIGNING_ALG=ES256). Also: the
documents themselves, key rotations with their overlap (by age, and to
another algorithm), and tokens posing as the gateway's.
"""

import base64
import hashlib
import json
import time

import httpx
import jwt
import pytest

from httpc import session_id
from stack import launch_stack

TOKEN_HEADER = "x-attach-identity"
KEYS_FILE = "signing-keys.json"


def discover(base_url):
    """The issuer document and a PyJWKClient on the keys it names."""
    r = httpx.get(base_url + "/.well-known/openid-configuration", timeout=10)
    assert r.status_code == 200, r.text
    doc = r.json()
    return doc, jwt.PyJWKClient(doc["jwks_uri"], cache_keys=False)


def check(token, base_url, audience, algorithms=("EdDSA",)):
    """The claims of token, verified from the issuer URL alone."""
    doc, keys = discover(base_url)
    key = keys.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key.key,
        algorithms=list(algorithms),
        audience=audience,
        issuer=doc["issuer"],
        options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"]},
    )


def stamped_token(s, sub="alice", path="/v1/chat/completions", headers=()):
    s.upstream.clear()
    resp = s.request("POST", path, token=s.token(sub=sub), headers=list(headers) + [("User-Agent", "curl/8.0")], body=b"{}")
    assert resp.status == 200, resp
    (token,) = s.upstream.last().header_values(TOKEN_HEADER)
    return token


def test_rfc_8414_and_oidc_discovery_documents_are_public_and_cacheable(gw):
    doc, _ = discover(gw.gateway.base_url)
    assert doc["issuer"] == gw.gateway.resource
    assert doc["jwks_uri"] == gw.gateway.resource + "/.well-known/jwks.json"
    assert doc["token_endpoint"] == gw.gateway.resource + "/oauth/token"
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in doc["grant_types_supported"]
    assert doc["id_token_signing_alg_values_supported"] == ["EdDSA"]
    for path in ("/.well-known/openid-configuration", "/.well-known/jwks.json"):
        r = httpx.get(gw.gateway.base_url + path, timeout=10)
        assert r.status_code == 200, (path, r.text)
        assert "max-age=" in r.headers["cache-control"], r.headers
    jwks = httpx.get(doc["jwks_uri"], timeout=10)
    assert jwks.headers["content-type"] == "application/jwk-set+json"
    (key,) = jwks.json()["keys"]
    assert {k: key[k] for k in ("kty", "crv", "alg", "use")} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
    }
    # Public halves only (RFC 8037 section 2: "d" is the private key).
    assert "d" not in key and "seed" not in key, key
    # Nothing reached the engine.
    assert gw.upstream.requests == []


def test_rfc_7519_the_upstream_verifies_who_the_user_is_with_public_keys_alone(gw):
    token = stamped_token(gw)
    claims = check(token, gw.gateway.base_url, "attach-engine")
    assert claims["sub"] == "alice"
    assert claims["sid"] == session_id("alice", "curl/8.0")
    assert claims["idp"] == gw.idp.issuer
    assert claims["iss"] == gw.gateway.resource
    assert 0 < claims["exp"] - claims["iat"] <= 60
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["typ"] == "JWT" and header["kid"]


def test_rfc_7519_section_4_1_3_the_token_is_for_its_upstream_only(gw):
    token = stamped_token(gw)
    with pytest.raises(jwt.InvalidAudienceError):
        check(token, gw.gateway.base_url, "attach-a2a")


def test_a_spoofed_identity_token_never_reaches_the_upstream(gw):
    forged = jwt.encode({"sub": "mallory", "aud": "attach-engine"}, "k" * 32, algorithm="HS256")
    token = stamped_token(gw, sub="bob", headers=[("X-Attach-Identity", forged)])
    assert token != forged
    assert check(token, gw.gateway.base_url, "attach-engine")["sub"] == "bob"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_rfc_8725_tokens_posing_as_the_gateways_are_refused(gw):
    """An `alg: none` or HS256 token carrying the gateway's kid, or one whose
    payload was changed after signing, fails a standard verifier that trusts
    only the gateway's published keys (RFC 8725 section 3.1)."""
    token = stamped_token(gw)
    head, payload, signature = token.split(".")
    kid = jwt.get_unverified_header(token)["kid"]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "mallory"
    forged_payload = b64(json.dumps(claims).encode())
    posing = {
        "none": f"{b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{forged_payload}.",
        "HS256": f"{b64(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{forged_payload}.{signature}",
        "tampered": f"{head}.{forged_payload}.{signature}",
    }
    for name, forged in posing.items():
        with pytest.raises(jwt.PyJWTError):
            check(forged, gw.gateway.base_url, "attach-engine")
            pytest.fail(f"{name} passed")


def test_the_signed_token_is_reused_within_its_lifetime(gw):
    first = stamped_token(gw)
    assert stamped_token(gw) == first
    # Another user gets their own.
    assert check(stamped_token(gw, sub="carol"), gw.gateway.base_url, "attach-engine")["sub"] == "carol"


def set_key_times(path, **times):
    doc = json.loads(path.read_text())
    for key in doc["keys"]:
        for name, value in times.items():
            if name == "created" or "retired" in key:
                key[name] = value
    path.write_text(json.dumps(doc))


def test_rotation_keeps_the_previous_key_published_for_the_overlap(tmp_path, artifacts):
    """A rotated key stays in the JWKS for ATTACH_KEY_OVERLAP_HOURS, so tokens
    it signed just before still verify; after it, they no longer do."""
    workdir = tmp_path / "rotation"
    with launch_stack(workdir) as s:
        old_token = stamped_token(s)
        old_kid = jwt.get_unverified_header(old_token)["kid"]
        keys_file = s.gateway.data_dir / KEYS_FILE
        assert keys_file.stat().st_mode & 0o777 == 0o600
        assert check(old_token, s.gateway.base_url, "attach-engine")["sub"] == "alice"
    # The key is now older than the rotation period: the next start rotates.
    set_key_times(keys_file, created=int(time.time()) - 31 * 86_400)
    with launch_stack(workdir) as s:
        new_token = stamped_token(s)
        new_kid = jwt.get_unverified_header(new_token)["kid"]
        assert new_kid != old_kid
        kids = [k["kid"] for k in httpx.get(s.gateway.base_url + "/.well-known/jwks.json", timeout=10).json()["keys"]]
        assert kids == [old_kid, new_kid]
        # Signed before the rotation, still good during the overlap.
        assert jwt.decode(
            old_token,
            discover(s.gateway.base_url)[1].get_signing_key_from_jwt(old_token).key,
            algorithms=["EdDSA"],
            audience="attach-engine",
        )["sub"] == "alice"
        assert check(new_token, s.gateway.base_url, "attach-engine")["sub"] == "alice"
    # The overlap ended: the old key is no longer published.
    set_key_times(keys_file, published_until=int(time.time()) - 1)
    with launch_stack(workdir) as s:
        kids = [k["kid"] for k in httpx.get(s.gateway.base_url + "/.well-known/jwks.json", timeout=10).json()["keys"]]
        assert kids == [new_kid]
        with pytest.raises(jwt.PyJWKClientError):
            discover(s.gateway.base_url)[1].get_signing_key_from_jwt(old_token)
    assert [k["kid"] for k in json.loads(keys_file.read_text())["keys"]] == [new_kid]


def published_keys(s):
    return httpx.get(s.gateway.base_url + "/.well-known/jwks.json", timeout=10).json()["keys"]


def unpadded(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_rfc_7518_es256_the_gateway_signs_with_a_p256_key_when_asked(tmp_path, artifacts):
    """ATTACH_SIGNING_ALG=ES256: the key set holds one P-256 key, published
    as an EC JWK (RFC 7518 section 6.2) whose kid is its RFC 7638
    thumbprint, and a standard verifier checks the token (ES256, RFC 7518
    section 3.4: r || s, 64 bytes) from the discovery document and the
    JWKS alone; a verifier expecting EdDSA refuses it."""
    with launch_stack(tmp_path / "es256", env={"ATTACH_SIGNING_ALG": "ES256"}) as s:
        token = stamped_token(s)
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "ES256" and header["typ"] == "JWT"
        assert len(unpadded(token.split(".")[2])) == 64
        doc, _ = discover(s.gateway.base_url)
        assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
        (key,) = published_keys(s)
        assert set(key) == {"kty", "crv", "x", "y", "use", "alg", "kid"}, key
        assert {k: key[k] for k in ("kty", "crv", "alg", "use")} == {
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "use": "sig",
        }
        canonical = f'{{"crv":"P-256","kty":"EC","x":"{key["x"]}","y":"{key["y"]}"}}'
        assert key["kid"] == b64(hashlib.sha256(canonical.encode()).digest()) == header["kid"]
        claims = check(token, s.gateway.base_url, "attach-engine", algorithms=["ES256"])
        assert claims["sub"] == "alice" and claims["iss"] == s.gateway.resource
        with pytest.raises(jwt.InvalidAlgorithmError):
            check(token, s.gateway.base_url, "attach-engine", algorithms=["EdDSA"])
        stored = json.loads((s.gateway.data_dir / KEYS_FILE).read_text())["keys"]
        assert [(k["alg"], len(unpadded(k["seed"]))) for k in stored] == [("ES256", 32)]


def test_another_signing_algorithm_rotates_at_start_up_and_keeps_the_old_key_published(tmp_path, artifacts):
    """A start with ATTACH_SIGNING_ALG=ES256 over an Ed25519 key set makes a
    P-256 key sign at once; the Ed25519 key stays in the JWKS for the
    overlap, so what it signed still verifies, each token under the
    algorithm of its own key."""
    workdir = tmp_path / "algorithm"
    with launch_stack(workdir) as s:
        old_token = stamped_token(s)
        assert jwt.get_unverified_header(old_token)["alg"] == "EdDSA"
    with launch_stack(workdir, env={"ATTACH_SIGNING_ALG": "ES256"}) as s:
        new_token = stamped_token(s)
        new_header = jwt.get_unverified_header(new_token)
        assert new_header["alg"] == "ES256"
        assert [(k["kid"], k["alg"]) for k in published_keys(s)] == [
            (jwt.get_unverified_header(old_token)["kid"], "EdDSA"),
            (new_header["kid"], "ES256"),
        ]
        doc, _ = discover(s.gateway.base_url)
        assert doc["id_token_signing_alg_values_supported"] == ["ES256", "EdDSA"]
        both = ("EdDSA", "ES256")
        # Signed before the rotation (by the stack on its previous port, so
        # under another issuer URL), still good during the overlap.
        old_key = discover(s.gateway.base_url)[1].get_signing_key_from_jwt(old_token).key
        assert jwt.decode(old_token, old_key, algorithms=list(both), audience="attach-engine")["sub"] == "alice"
        assert check(new_token, s.gateway.base_url, "attach-engine", algorithms=both)["sub"] == "alice"
        # The new token relabelled EdDSA is checked against its P-256 key, and fails.
        head, payload, signature = new_token.split(".")
        relabelled = json.loads(unpadded(head))
        relabelled["alg"] = "EdDSA"
        posing = f"{b64(json.dumps(relabelled).encode())}.{payload}.{signature}"
        with pytest.raises(jwt.PyJWTError):
            check(posing, s.gateway.base_url, "attach-engine", algorithms=both)
    # Started again with ES256: no further rotation.
    with launch_stack(workdir, env={"ATTACH_SIGNING_ALG": "ES256"}) as s:
        assert [k["alg"] for k in published_keys(s)] == ["EdDSA", "ES256"]
        assert jwt.get_unverified_header(stamped_token(s))["kid"] == new_header["kid"]
