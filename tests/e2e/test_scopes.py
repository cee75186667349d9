"""Required scopes: global ones and a provider's own; a valid token without them gets 403."""

import time

import pytest

from httpc import assert_passed, assert_refused
from idp import IdP
from stack import launch_stack, provider_entry


@pytest.fixture(scope="module")
def other_idp():
    """A second issuer with no scope requirement of its own."""
    with IdP(keys=("ES256",)) as idp:
        yield idp


@pytest.fixture(scope="module")
def stack(tmp_path_factory, artifacts, other_idp):
    main_idp = IdP(keys=("RS256",))
    config = {
        "required_scopes": ["read"],
        "providers": [
            provider_entry(main_idp, required_scopes=["write"]),
            provider_entry(other_idp),
        ],
    }
    with launch_stack(
        tmp_path_factory.mktemp("scopes"), idp=main_idp, provider="config", config=config
    ) as s:
        yield s


PASSING = {
    "scope-string": {"scope": "read write"},
    "scope-any-order-with-extra": {"scope": "profile write openid read"},
    "scp-array": {"scp": ["read", "write"]},
    "scp-array-with-extra": {"scp": ["email", "write", "read"]},
}


@pytest.mark.parametrize("case", sorted(PASSING))
def test_token_with_required_scopes_passes(gw, case):
    resp = gw.get("/", token=gw.token(**PASSING[case]))
    # Two issuers are configured, so each user is qualified by its issuer.
    assert_passed(resp, gw.upstream, f"{gw.idp.issuer}#user-42")


INSUFFICIENT = {
    "no-scope-claim": {},
    "global-scope-only": {"scope": "read"},
    "provider-scope-only": {"scope": "write"},
    "scp-missing-one": {"scp": ["read"]},
    "empty-scope": {"scope": ""},
    "empty-scp": {"scp": []},
    "concatenated": {"scope": "readwrite"},
    "comma-separated": {"scope": "read,write"},
    "prefix-lookalike": {"scope": "read:all write:all"},
    "case-differs": {"scope": "READ WRITE"},
}


@pytest.mark.parametrize("case", sorted(INSUFFICIENT))
def test_token_lacking_scopes_gets_403(gw, case):
    resp = gw.get("/v1/items", token=gw.token(**INSUFFICIENT[case]))
    assert_refused(resp, gw.resource, 403, "insufficient_scope")
    assert gw.upstream.requests == []


def test_provider_scopes_apply_only_to_that_provider(gw, other_idp):
    resp = gw.get("/", token=other_idp.token(scope="read", sub="other-user"))
    assert_passed(resp, gw.upstream, f"{other_idp.issuer}#other-user")


def test_global_scopes_apply_to_every_provider(gw, other_idp):
    resp = gw.get("/", token=other_idp.token(scope="write", sub="other-user"))
    assert_refused(resp, gw.resource, 403, "insufficient_scope")
    assert gw.upstream.requests == []


def test_invalid_token_is_401_even_when_scopes_also_lack(gw):
    token = gw.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    resp = gw.get("/v1/items", token=token)
    assert_refused(resp, gw.resource, 401, "invalid_token")
    assert gw.upstream.requests == []


def test_public_paths_need_no_scope(gw):
    assert gw.get("/healthz").status == 200
