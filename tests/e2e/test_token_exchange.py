"""The gateway's token endpoint (RFC 8693 OAuth 2.0 Token Exchange), driven
by a standard OAuth client library (authlib, which finds the endpoint in
the gateway's discovery document, OpenID Connect Discovery 1.0 section 3),
and the delegated tokens it issues, used as bearer tokens through the real
Envoy: the upstream sees the user, the actor chain and an identity token
carrying `act`.

The user signs in with the test IdP (OIDC); agents prove who they are with
their own did:key DID-JWTs (EdDSA), made here with PyJWT.
"""

import base64
import time

import httpx
import jwt
import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from did_key import ED25519_PUB, did_key
from stack import launch_stack

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
DID_AUD = "did:web:gateway.attach.test"


class Agent:
    """An agent with its own did:key (W3C did:key, Ed25519: multicodec 0xed01)."""

    def __init__(self):
        self.key = ed25519.Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.did = did_key(ED25519_PUB, raw)

    def token(self, ttl=60):
        """Its DID-JWT: the actor token of RFC 8693 section 2.1."""
        now = int(time.time())
        fragment = self.did.split(":")[-1]
        return jwt.encode(
            {"iss": self.did, "sub": self.did, "aud": DID_AUD, "iat": now, "exp": now + ttl},
            self.key,
            algorithm="EdDSA",
            headers={"kid": f"{self.did}#{fragment}"},
        )


PLANNER, CODER = Agent(), Agent()

STACK = dict(
    config={
        "did": {"audiences": [DID_AUD], "allow": [PLANNER.did, CODER.did], "max_ttl_secs": 600},
        "exchange_audiences": [CODER.did],
    },
)


def client(s):
    """authlib's client on the endpoint the discovery document names."""
    doc = httpx.get(s.gateway.base_url + "/.well-known/openid-configuration", timeout=10).json()
    oauth = OAuth2Session(client_id="planner", token_endpoint_auth_method="none")
    return oauth, doc


def exchange(s, subject, actor, **params):
    """RFC 8693 section 2.1 request through authlib; the token response."""
    oauth, doc = client(s)
    # The token endpoint is named by the gateway's public URL; the stack's
    # Envoy listens there.
    assert doc["token_endpoint"] == s.gateway.resource + "/oauth/token"
    with oauth:
        return oauth.fetch_token(
            s.gateway.base_url + "/oauth/token",
            grant_type=GRANT,
            subject_token=subject,
            subject_token_type=params.pop("subject_token_type", ACCESS_TOKEN_TYPE),
            actor_token=actor,
            actor_token_type=JWT_TYPE,
            timeout=10,
            **params,
        )


def refused(s, subject, actor, **params):
    with pytest.raises(OAuthError) as caught:
        exchange(s, subject, actor, **params)
    return caught.value


def verified(s, token, audience):
    """The claims of a token the gateway issued, checked from its discovery
    document and JWKS alone (RFC 7519 section 7.2)."""
    doc = httpx.get(s.gateway.base_url + "/.well-known/openid-configuration", timeout=10).json()
    key = jwt.PyJWKClient(doc["jwks_uri"], cache_keys=False).get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["EdDSA", "ES256"], audience=audience, issuer=doc["issuer"])


def user_token(s, **claims):
    claims.setdefault("scope", "read write")
    return s.token(sub="alice", **claims)


def test_rfc_8693_section_2_2_1_a_token_delegated_to_the_planner(gw):
    answer = exchange(gw, user_token(gw), PLANNER.token())
    assert answer["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert answer["token_type"] == "Bearer"
    assert 0 < answer["expires_in"] <= 300
    assert answer["scope"] == "read write"
    claims = verified(gw, answer["access_token"], gw.gateway.resource)
    assert claims["sub"] == "alice"
    # RFC 8693 section 4.1: the actor in `act`.
    assert claims["act"] == {"sub": PLANNER.did}
    assert claims["idp"] == gw.idp.issuer
    assert claims["exp"] - claims["iat"] <= 300


def test_the_delegated_token_is_a_bearer_token_the_upstream_sees_the_user_and_the_chain(gw):
    delegated = exchange(gw, user_token(gw), PLANNER.token())["access_token"]
    resp = gw.request("POST", "/v1/chat/completions", token=delegated, body=b"{}")
    assert resp.status == 200, resp
    seen = gw.upstream.last()
    assert seen.header_values("x-attach-user") == ["alice"]
    assert seen.header_values("x-attach-actor") == [PLANNER.did]
    (identity,) = seen.header_values("x-attach-identity")
    claims = verified(gw, identity, "attach-engine")
    assert claims["sub"] == "alice" and claims["act"] == {"sub": PLANNER.did}
    assert identity != delegated


def test_an_inbound_actor_header_is_stripped(gw):
    resp = gw.request(
        "POST",
        "/v1/chat/completions",
        token=user_token(gw),
        headers=[("X-Attach-Actor", PLANNER.did)],
        body=b"{}",
    )
    assert resp.status == 200, resp
    assert gw.upstream.last().header_values("x-attach-actor") == []


def test_only_the_current_actor_exchanges_a_delegated_token(gw):
    delegated = exchange(gw, user_token(gw), PLANNER.token())["access_token"]
    # The planner narrows it for the coder (an audience the gateway knows).
    narrowed = exchange(gw, delegated, PLANNER.token(), audience=CODER.did, scope="read")
    claims = verified(gw, narrowed["access_token"], CODER.did)
    assert claims["act"] == {"sub": PLANNER.did} and claims["scope"] == "read"
    # A delegated token stolen by another agent is useless to it.
    error = refused(gw, delegated, CODER.token())
    assert error.error == "invalid_request"
    assert "delegated to another actor" in error.description


def test_rfc_8693_section_2_2_2_refusals(gw):
    subject = user_token(gw)
    actor = PLANNER.token()
    error = refused(gw, subject, actor, audience="https://elsewhere.example")
    assert error.error == "invalid_target", error
    error = refused(gw, subject, actor, resource="https://elsewhere.example/mcp")
    assert error.error == "invalid_target", error
    error = refused(gw, subject, actor, scope="read admin")
    assert error.error == "invalid_scope", error
    expired = gw.token(sub="alice", iat=int(time.time()) - 700, exp=int(time.time()) - 100)
    error = refused(gw, expired, actor)
    assert (error.error, error.description) == ("invalid_request", "subject_token: token expired")
    error = refused(gw, subject, PLANNER.token(ttl=-100))
    assert error.error == "invalid_request" and error.description.startswith("actor_token:")
    # The actor token is the actor's own credential, never a delegation.
    delegated = exchange(gw, subject, actor)["access_token"]
    error = refused(gw, user_token(gw), delegated)
    assert "own credential" in error.description


def test_tokens_posing_as_the_gateways_are_refused(gw):
    """An HS256 token with the gateway's issuer (RFC 8725 section 3.1), and an
    `alg: none` one, are neither exchanged nor accepted as bearer tokens."""
    now = int(time.time())
    claims = {"iss": gw.gateway.resource, "sub": "mallory", "aud": gw.gateway.resource,
              "iat": now, "exp": now + 60, "sid": "s", "idp": "x"}
    hs256 = jwt.encode(claims, "k" * 32, algorithm="HS256", headers={"kid": "x"})
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    none = header + "." + hs256.split(".")[1] + "."
    for forged in (hs256, none):
        error = refused(gw, forged, PLANNER.token())
        assert error.error == "invalid_request" and error.description.startswith("subject_token:"), error
        resp = gw.request("POST", "/v1/chat/completions", token=forged, body=b"{}")
        assert resp.status == 401, resp
    # The identity token the gateway signs for an upstream is no bearer token.
    gw.upstream.clear()
    assert gw.request("POST", "/v1/chat/completions", token=user_token(gw), body=b"{}").status == 200
    (identity,) = gw.upstream.last().header_values("x-attach-identity")
    assert gw.request("POST", "/v1/chat/completions", token=identity, body=b"{}").status == 401


def test_rfc_6749_section_5_2_malformed_requests_and_methods(gw):
    url = gw.gateway.base_url + "/oauth/token"
    r = httpx.post(url, data={"grant_type": "client_credentials"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type", r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    r = httpx.post(url, data={"grant_type": GRANT, "subject_token": "x"}, timeout=10)
    assert r.json() == {"error": "invalid_request", "error_description": "subject_token_type is required"}
    r = httpx.post(url, content=b"grant_type=%zz", timeout=10)
    assert r.json()["error"] == "invalid_request", r.text
    r = httpx.post(url, content=b"x" * 40_000, timeout=10)
    assert r.status_code == 400 and "too large" in r.json()["error_description"], r.text
    r = httpx.get(url, timeout=10)
    assert r.status_code == 405 and r.headers["allow"] == "POST", r.text
    # Nothing of it reached the engine.
    assert gw.upstream.requests == []


def test_a_delegated_token_outlives_a_rotation_for_the_overlap_only(tmp_path, artifacts):
    """A token delegated before the signing key rotated is still accepted while
    the previous key stays published, and refused once it is not."""
    from gateway import free_ports
    from test_identity_token import KEYS_FILE, set_key_times

    workdir = tmp_path / "rotation"
    (port,) = free_ports(1)
    options = dict(STACK, port=port)
    with launch_stack(workdir, **options) as s:
        delegated = exchange(s, user_token(s, exp=int(time.time()) + 3600), PLANNER.token())["access_token"]
        keys_file = s.gateway.data_dir / KEYS_FILE
    set_key_times(keys_file, created=int(time.time()) - 31 * 86_400)
    with launch_stack(workdir, **options) as s:
        assert [k["kid"] for k in httpx.get(s.gateway.base_url + "/.well-known/jwks.json", timeout=10).json()["keys"]][0] == jwt.get_unverified_header(delegated)["kid"]
        resp = s.request("POST", "/v1/chat/completions", token=delegated, body=b"{}")
        assert resp.status == 200, resp
        assert s.upstream.last().header_values("x-attach-actor") == [PLANNER.did]
    set_key_times(keys_file, published_until=int(time.time()) - 1)
    with launch_stack(workdir, **options) as s:
        resp = s.request("POST", "/v1/chat/completions", token=delegated, body=b"{}")
        assert resp.status == 401, resp

