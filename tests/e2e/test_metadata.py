"""RFC 9728 protected-resource metadata, and which paths are public."""

import pytest

from httpc import METADATA_PATH, assert_passed, assert_refused
from idp import IdP
from stack import launch_stack, provider_entry

SCOPES = ["read", "write"]
PUBLIC = [METADATA_PATH, "/healthz", "/docs/*", "/status"]


@pytest.fixture(scope="module")
def second_idp():
    with IdP(keys=("ES256",)) as idp:
        yield idp


@pytest.fixture(scope="module")
def stack(tmp_path_factory, artifacts, second_idp):
    config = {
        "providers": [provider_entry(second_idp)],
        "scopes_supported": SCOPES,
        "public_paths": PUBLIC,
    }
    with launch_stack(tmp_path_factory.mktemp("metadata"), config=config) as s:
        yield s


def assert_metadata(resp, resource, issuers, scopes=None):
    assert resp.status == 200, resp
    assert (resp.header("content-type") or "").startswith("application/json"), resp
    doc = resp.json()
    assert doc["resource"] == resource, doc
    assert sorted(doc["authorization_servers"]) == sorted(issuers), doc
    assert doc["bearer_methods_supported"] == ["header"], doc
    if scopes is None:
        assert "scopes_supported" not in doc, doc
    else:
        assert doc["scopes_supported"] == scopes, doc
    return doc


def test_metadata_document(gw, second_idp):
    resp = gw.get(METADATA_PATH)
    assert_metadata(resp, gw.resource, [gw.idp.issuer, second_idp.issuer], SCOPES)
    assert gw.upstream.requests == [], "the filter itself serves the metadata"


@pytest.mark.parametrize(
    "headers",
    [[("Authorization", "Bearer not-a-token")], [("Authorization", "Basic Zm9vOmJhcg==")]],
    ids=["garbage-bearer", "basic"],
)
def test_metadata_served_whatever_the_credentials(gw, second_idp, headers):
    resp = gw.get(METADATA_PATH, headers=headers)
    assert_metadata(resp, gw.resource, [gw.idp.issuer, second_idp.issuer], SCOPES)
    assert gw.upstream.requests == []


def test_metadata_with_query_string(gw, second_idp):
    resp = gw.get(METADATA_PATH + "?x=1")
    assert_metadata(resp, gw.resource, [gw.idp.issuer, second_idp.issuer], SCOPES)


def test_challenge_points_at_metadata(gw):
    resp = gw.get("/v1/items")
    params = assert_refused(resp, gw.resource, 401, None)
    # The document the challenge points at is the one served here.
    path = params["resource_metadata"][len(gw.gateway.base_url):]
    assert gw.get(path).json()["resource"] == gw.resource


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/healthz?probe=1", "/status", "/docs/", "/docs/a", "/docs/a/b.html?v=2"],
)
def test_public_paths_pass_without_token(gw, path):
    resp = gw.get(path)
    assert resp.status == 200, resp
    rec = gw.upstream.last()
    assert rec.path == path
    assert rec.header("x-attach-user") is None


@pytest.mark.parametrize(
    "path",
    ["/", "/healthz/deep", "/healthzx", "/HEALTHZ", "/status/x", "/doc", "/docsx", "/v1/status"],
)
def test_other_paths_need_a_token(gw, path):
    resp = gw.get(path)
    assert_refused(resp, gw.resource, 401, None)
    assert gw.upstream.requests == []


def test_public_path_with_valid_token_still_passes(gw):
    resp = gw.get("/docs/a", token=gw.token())
    assert resp.status == 200, resp
    assert gw.upstream.last().path == "/docs/a"


@pytest.mark.parametrize(
    "path",
    [
        "/docs/../v1/secret",
        "/docs/%2e%2e/v1/secret",
        "/docs/%2E%2E/v1/secret",
        "/docs/..%2Fv1%2Fsecret",
        "/docs//../v1/secret",
        "/docs/./../v1/secret",
        "/healthz/../v1/secret",
    ],
)
def test_dot_segments_do_not_escape_public_prefix(gw, path):
    """Whatever Envoy does with dot segments, a request that leaves the public
    prefix must not reach the upstream without a token."""
    resp = gw.get(path)
    for rec in gw.upstream.requests:
        lowered = rec.path.lower()
        assert (
            rec.path.startswith(("/docs/", "/healthz"))
            and ".." not in lowered
            and "%2e%2e" not in lowered
            and "%2f" not in lowered
        ), f"{path} reached the upstream as {rec.path} without a token"
    if resp.status == 401:
        assert_refused(resp, gw.resource, 401, None)


def test_resource_defaults_to_the_gateway_url(make_stack):
    """Without `resource` in ATTACH_CONFIG the launcher uses the gateway's own URL,
    whatever Host the client sends."""
    s = make_stack(resource=None)
    base = s.gateway.base_url
    assert_metadata(s.get(METADATA_PATH), base, [s.idp.issuer])
    assert_metadata(s.get(METADATA_PATH, headers={"Host": "api.example.test"}), base, [s.idp.issuer])
    assert_refused(s.get("/v1/items"), base, 401, None)
    assert_passed(s.get("/", token=s.token()), s.upstream, "user-42")


def test_public_url_sets_the_resource(make_stack):
    public = "https://api.example.test"
    s = make_stack(resource=None, env={"ATTACH_PUBLIC_URL": public})
    assert_metadata(s.get(METADATA_PATH), public, [s.idp.issuer])
    assert_refused(s.get("/v1/items"), public, 401, None)
    assert_refused(s.get("/v1/items", token="abc.def.ghi"), public, 401, "invalid_token")
