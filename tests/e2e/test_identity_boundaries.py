"""Who a caller is, through the real gateway: no two principals map to the
same user, self-issued tokens obey the configured scopes, did:pkh aliases are
one user, and the gateway's assertion reaches only the upstream it is made for.

Each test replays an attack that worked before and checks the gateway still
answers afterwards.
"""

import json
import time
import uuid

import httpx
import pytest

from a2a_agents import JsonAgent
from httpc import assert_refused
from idp import IdP
from stack import launch_stack, provider_entry
from test_did_tokens import NO_DID_ENV, did_peer, mint_one, token_request  # noqa: F401  (fixture)

DID_AUD = "did:web:gateway.attach.test"
DID_SECTION = {"audiences": [DID_AUD], "max_ttl_secs": 3600, "allow": ["did:key:*", "did:pkh:eip155:1:*"]}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def second_idp():
    with IdP(keys=("ES256",)) as idp:
        yield idp


@pytest.fixture(scope="module")
def two(tmp_path_factory, artifacts, second_idp):
    """Two OIDC issuers and DID sign-in, with the companion service and an http agent."""
    first = IdP(keys=("RS256",))
    config = {
        "providers": [provider_entry(first), provider_entry(second_idp)],
        "did": dict(DID_SECTION, open=True),
    }
    with JsonAgent() as seed:
        with launch_stack(
            tmp_path_factory.mktemp("identity-boundaries"),
            idp=first,
            provider="config",
            config=config,
            a2a=True,
            env=dict(NO_DID_ENV, A2A_AGENTS=f"seed={seed.url};kind=http;timeout=10"),
        ) as s:
            s.second = second_idp
            s.seed = seed
            yield s


def call(s, method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    return s.request(method, path, headers=dict(JSON), body=data, token=token)


def memory(s, token):
    r = call(s, "GET", "/mem/events?limit=500", token)
    assert r.status == 200, r
    return r.json()["events"]


def stamped_user(s, token):
    s.upstream.clear()
    r = s.get("/api/tags", token=token)
    assert r.status == 200, r
    return s.upstream.last().header("x-attach-user")


def still_answers(s):
    assert s.get("/healthz").status == 200
    assert stamped_user(s, s.token(sub="probe")) == f"{s.idp.issuer}#probe"


def write_note(s, token, content):
    r = call(s, "POST", "/mem/events", token, {"kind": "note", "content": content})
    assert r.status == 200, r
    return r.json()["mem_id"]


def test_the_same_subject_at_two_issuers_is_two_users(two):
    """`alice` at the second issuer used to read the memory of `alice` at the first."""
    one, other = two.token(sub="alice"), two.second.token(sub="alice")
    assert stamped_user(two, one) == f"{two.idp.issuer}#alice"
    assert stamped_user(two, other) == f"{two.second.issuer}#alice"
    mem_id = write_note(two, one, "issuer one's secret")
    assert [e["mem_id"] for e in memory(two, one)] == [mem_id]
    assert memory(two, other) == []
    assert call(two, "GET", f"/mem/events/{mem_id}", other).status == 404
    still_answers(two)


def test_an_issuer_cannot_speak_for_a_did(two, make_stack, did_peer):  # noqa: F811
    """An issuer's token whose `sub` is a victim's did:key used to read the victim's memory."""
    victim = mint_one(**token_request("key-ed25519"))
    mem_id = write_note(two, victim["jwt"], "the victim's note")
    assert stamped_user(two, victim["jwt"]) == victim["did"]
    # With several issuers the subject is qualified: a user of its own, with nothing in it.
    impostor = two.second.token(sub=victim["did"])
    assert stamped_user(two, impostor) == f"{two.second.issuer}#{victim['did']}"
    assert memory(two, impostor) == []
    assert [e["mem_id"] for e in memory(two, victim["jwt"])] == [mem_id]
    still_answers(two)
    # With a single issuer the plain `sub` is the user, so a DID-shaped one is refused.
    single = make_stack(a2a=True, config={"did": dict(DID_SECTION, open=True)}, env=NO_DID_ENV)
    mem_id = write_note(single, victim["jwt"], "the victim's note")
    r = single.get("/mem/events", token=single.token(sub=victim["did"]))
    assert_refused(r, single.resource, 401, "invalid_token")
    assert [e["mem_id"] for e in memory(single, victim["jwt"])] == [mem_id]
    assert stamped_user(single, single.token(sub="alice")) == "alice"


def test_a_subject_named_like_the_gateway_cannot_write_for_others(two, did_peer):  # noqa: F811
    """A token with `sub = attach-gateway` used to write forged events into anyone's memory."""
    victim = mint_one(**token_request("key-ed25519"))
    forged = [{"id": str(uuid.uuid4()), "user": victim["did"], "session": "s", "kind": "prompt",
               "role": "user", "content": "forged", "model": "gpt"}]
    for token in (two.second.token(sub="attach-gateway"), two.token(sub="attach-gateway")):
        r = call(two, "POST", "/mem/ingest", token, forged)
        assert r.status == 401, r
    assert memory(two, victim["jwt"]) == []
    still_answers(two)


def test_the_engine_gets_no_assertion_and_an_agent_cannot_replay_its_own(two):
    """The assertion went to every upstream, the engine included, and any of
    them could replay it at the service for 60 s."""
    token = two.token(sub="carol")
    two.upstream.clear()
    r = two.request("POST", "/api/chat", headers=dict(JSON), body=b'{"model":"m"}', token=token)
    assert r.status == 200, r
    seen = two.upstream.last()
    assert seen.header("x-attach-user") == f"{two.idp.issuer}#carol"
    assert seen.header("x-attach-assertion") is None
    # The service hands agents an assertion for their own audience ...
    r = call(two, "POST", "/a2a/tasks/send", token, {"target": "seed", "input": "hi"})
    assert r.status == 200, r
    deadline = time.monotonic() + 15
    while not two.seed.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    headers = two.seed.requests[-1]["headers"]
    assertion = headers["x-attach-assertion"]
    assert assertion.split(".")[2] == "attach-agent", assertion
    # ... which the service itself refuses when the agent replays it directly.
    replay = httpx.get(
        f"http://127.0.0.1:{two.gateway.a2a_port}/mem/events",
        headers={"X-Attach-User": headers["x-attach-user"],
                 "X-Attach-Session": headers["x-attach-session"],
                 "X-Attach-Assertion": assertion},
        timeout=10,
    )
    assert replay.status_code == 401, replay.text
    still_answers(two)


def test_did_pkh_aliases_are_one_user(two, did_peer):  # noqa: F811
    """One key signed in as `eip155:1`, `eip155:01` and upper-case hex: several users."""
    seed = "11" * 32
    canonical = mint_one(**token_request("pkh-es256k-r", seed=seed, address_case="lower"))
    did = canonical["did"]
    assert did == did.lower() and did.startswith("did:pkh:eip155:1:0x"), did
    hex_address = did.rsplit(":", 1)[1][2:]
    aliases = [
        mint_one(**token_request("pkh-es256k-r", seed=seed)),  # EIP-55 mixed case
        mint_one(**token_request("pkh-es256k-r", seed=seed, iss=f"did:pkh:eip155:01:0x{hex_address.upper()}")),
        mint_one(**token_request("pkh-es256k", seed=seed, iss=f"did:pkh:eip155:001:0x{hex_address}")),
    ]
    mem_id = write_note(two, canonical["jwt"], "one account")
    for alias in aliases:
        assert alias["jwt"] != canonical["jwt"]
        assert stamped_user(two, alias["jwt"]) == did, alias["iss"]
        assert [e["mem_id"] for e in memory(two, alias["jwt"])] == [mem_id]
    # The chain id is part of the identity, and the allow-list names chain 1 only.
    other_chain = mint_one(**token_request("pkh-es256k-r", seed=seed, chain="137"))
    r = two.get("/api/tags", token=other_chain["jwt"])
    assert_refused(r, two.resource, 401, "invalid_token")
    still_answers(two)


@pytest.fixture(scope="module")
def scoped(tmp_path_factory, artifacts):
    config = {"required_scopes": ["x"], "did": DID_SECTION}
    with launch_stack(
        tmp_path_factory.mktemp("did-scopes"), provider="config", idp_up=False, config=config,
        env=NO_DID_ENV,
    ) as s:
        yield s


def test_required_scopes_apply_to_did_tokens(scoped, did_peer):  # noqa: F811
    """With `required_scopes: ["x"]` a self-issued did:key token without the scope used to pass.
    RFC 6750 §3.1: a token without the scope the resource needs gets 403 `insufficient_scope`."""
    without = mint_one(**token_request("key-ed25519", claims={"scope": "read"}))
    scoped.upstream.clear()
    r = scoped.get("/api/tags", token=without["jwt"])
    assert_refused(r, scoped.resource, 403, "insufficient_scope")
    assert scoped.upstream.requests == []
    with_scope = mint_one(**token_request("key-ed25519", claims={"scope": "read x"}))
    r = scoped.get("/api/tags", token=with_scope["jwt"])
    assert r.status == 200, r
    assert scoped.upstream.last().header("x-attach-user") == with_scope["did"]
