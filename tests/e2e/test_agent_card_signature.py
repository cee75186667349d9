"""Agent cards signed by the gateway (A2A 1.0 section 8.4) through the real
Envoy, filter and service, checked as any client would check them, with
nothing of the gateway's code: the key found from the gateway's address
alone (OpenID Connect Discovery's `jwks_uri`, then the JWKS with PyJWT's
PyJWKClient), the payload rebuilt as the RFC 8785 canonical form of the
card without its `signatures` (Trail of Bits' `rfc8785` package), and the
detached JWS (RFC 7515 appendix F) checked with PyJWT as EdDSA.

Every card the service serves is signed: the public 1.0 card, the 0.3 one
at the 0.3 path (0.3's `AgentCard.signatures` is the same
`AgentCardSignature`), and the extended cards over JSON-RPC 1.0 and 0.3 and
HTTP+JSON. The agent's own signature, which the gateway's rewriting broke,
is replaced by the gateway's. A card with one member changed fails.
Section 8.4.1 rule 1 (members at their protocol-buffer defaults left out of
the payload) is checked against the SDK's descriptors of lf.a2a.v1: the
gateway's cards carry no such member, so a verifier that removes defaults
first rebuilds the same payload. (a2a-sdk 1.3's own verifier removes every
empty member, REQUIRED ones and an empty scope list included, which the
section's example keeps: it is not the verifier here.)
"""

import base64
import json

import httpx
import jwt
import pytest
import rfc8785
from a2a.types import a2a_pb2 as pb
from a2a.utils.signing import create_agent_card_signer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.api import field_behavior_pb2

from a2a_agents import SdkAgent, agent_base
from stack import launch_stack

EXTENDED = {
    "card": {
        "description": "Answers in upper case; signed-in callers see more",
        "skills": [{"id": "shout", "name": "Shout", "description": "Adds emphasis", "tags": []}],
    }
}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def agents_own_signer():
    """The agent signs its own card (ES256, its own key), as section 8.4 lets it."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    header = {
        "alg": "ES256",
        "typ": "JOSE",
        "kid": "the-agents-own-key",
        "jku": "http://agent.example/jwks",
    }
    return create_agent_card_signer(pem, header)


@pytest.fixture(scope="module")
def a2a(tmp_path_factory, artifacts):
    workdir = tmp_path_factory.mktemp("agent-card-signature")
    card_file = workdir / "upper-extended-card.json"
    card_file.write_text(json.dumps(EXTENDED))
    with SdkAgent("upper", sign_card=agents_own_signer()) as upper:
        registry = workdir / "a2a.json"
        registry.write_text(
            json.dumps(
                {"agents": [{"name": "upper", "url": upper.url, "extended_card": str(card_file)}]}
            )
        )
        with launch_stack(workdir, a2a=True, env={"A2A_CONFIG": str(registry)}) as s:
            s.upper = upper
            yield s


def discovery(s):
    """The gateway's `jwks_uri` and a PyJWKClient on it, from its address alone."""
    r = httpx.get(s.gateway.base_url + "/.well-known/openid-configuration", timeout=10)
    assert r.status_code == 200, r.text
    jwks_uri = r.json()["jwks_uri"]
    return jwks_uri, jwt.PyJWKClient(jwks_uri, cache_keys=False)


def verify(s, card):
    """Section 8.4.3 for card's one signature; its protected header."""
    jwks_uri, keys = discovery(s)
    (signature,) = card["signatures"]
    header = json.loads(unb64(signature["protected"]))
    assert header["alg"] == "EdDSA" and header["typ"] == "JOSE", header
    # The jku names the gateway's published JWKS, and the kid resolves there.
    assert header["jku"] == jwks_uri, header
    key = keys.get_signing_key(header["kid"])
    payload = rfc8785.dumps({k: v for k, v in card.items() if k != "signatures"})
    token = f"{signature['protected']}.{b64(payload)}.{signature['signature']}"
    assert jwt.api_jws.decode(token, key.key, algorithms=["EdDSA"]) == payload
    return header


def public_card(s, path="agent-card.json"):
    r = httpx.get(f"{agent_base(s.gateway, 'upper')}/.well-known/{path}", timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


def bearer(s, sub="alice"):
    return {"Authorization": f"Bearer {s.token(sub=sub)}"}


def rpc_card(s, method, version):
    r = httpx.post(
        agent_base(s.gateway, "upper"),
        json={"jsonrpc": "2.0", "id": "c-1", "method": method, "params": {}},
        headers={**bearer(s), "A2A-Version": version},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "error" not in body, body
    return body["result"]


def test_a2a_1_0_section_8_4_3_the_public_card_verifies_with_the_published_key(a2a):
    card = public_card(a2a)
    header = verify(a2a, card)
    jwks_uri, _ = discovery(a2a)
    published = httpx.get(jwks_uri, timeout=10).json()["keys"]
    assert header["kid"] in [k["kid"] for k in published]
    assert set(header) == {"alg", "typ", "kid", "jku"}
    assert set(card["signatures"][0]) == {"protected", "signature"}, "the payload is detached"


def test_a2a_1_0_section_8_4_the_agents_own_signature_is_replaced_by_the_gateways(a2a):
    downstream = httpx.get(a2a.upper.url + "/.well-known/agent-card.json", timeout=10).json()
    (own,) = downstream["signatures"]
    assert json.loads(unb64(own["protected"]))["kid"] == "the-agents-own-key"
    card = public_card(a2a)
    assert len(card["signatures"]) == 1
    assert verify(a2a, card)["kid"] != "the-agents-own-key"


@pytest.mark.parametrize(
    "change",
    [
        ("name", "impostor"),
        ("description", "Answers in upper case."),
        (
            "supportedInterfaces",
            [{"url": "https://evil.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        ),
        ("iconUrl", "https://evil.example/icon.png"),
    ],
)
def test_a2a_1_0_section_8_4_3_a_card_with_one_member_changed_fails(a2a, change):
    card = public_card(a2a)
    name, value = change
    card[name] = value
    with pytest.raises(jwt.InvalidSignatureError):
        verify(a2a, card)


def test_rfc_8785_member_order_and_spacing_are_not_what_is_signed(a2a):
    card = public_card(a2a)
    reordered = json.loads(json.dumps(dict(reversed(list(card.items()))), indent=2))
    verify(a2a, reordered)
    # Signing is deterministic: the same card, the same bytes, one ETag.
    url = f"{agent_base(a2a.gateway, 'upper')}/.well-known/agent-card.json"
    first, again = httpx.get(url, timeout=20), httpx.get(url, timeout=20)
    assert first.content == again.content
    assert first.headers["etag"] == again.headers["etag"]


def test_a2a_0_3_card_is_signed_as_served(a2a):
    card = public_card(a2a, "agent.json")
    assert card["protocolVersion"] == "0.3.0"
    verify(a2a, card)


@pytest.mark.parametrize(
    "method, version",
    [("GetExtendedAgentCard", "1.0"), ("agent/getAuthenticatedExtendedCard", "0.3")],
)
def test_a2a_1_0_section_8_4_extended_cards_are_signed(a2a, method, version):
    card = rpc_card(a2a, method, version)
    assert [s["id"] for s in card["skills"]] == ["upper", "shout"], card
    verify(a2a, card)


def test_a2a_1_0_section_8_4_the_http_json_extended_card_is_signed(a2a):
    url = f"{agent_base(a2a.gateway, 'upper')}/extendedAgentCard"
    r = httpx.get(url, headers=bearer(a2a), timeout=20)
    assert r.status_code == 200, r.text
    card = r.json()
    assert card["description"] == EXTENDED["card"]["description"]
    verify(a2a, card)


def is_required(field):
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.REQUIRED in behaviors


def without_defaults(message, descriptor):
    """Section 8.4.1 rule 1 on a ProtoJSON message of descriptor: members at
    their default left out unless REQUIRED or with field presence."""
    fields = {f.json_name: f for f in descriptor.fields}
    out = {}
    for name, value in message.items():
        field = fields[name]
        kind = field.message_type
        if kind is not None and kind.GetOptions().map_entry:
            inner = kind.fields_by_name["value"].message_type
            if inner is not None:
                value = {k: without_defaults(v, inner) for k, v in value.items()}
            default = not value
        elif field.is_repeated:
            if kind is not None:
                value = [without_defaults(v, kind) for v in value]
            default = not value
        elif kind is not None:
            if not kind.full_name.startswith("google.protobuf."):
                value = without_defaults(value, kind)
            default = False
        else:
            default = not field.has_presence and value in ("", 0, False)
        if default and not is_required(field):
            continue
        out[name] = value
    return out


def test_a2a_1_0_section_8_4_1_the_specifications_example_of_default_removal():
    fragment = {
        "name": "Example Agent",
        "description": "",
        "capabilities": {"streaming": False, "pushNotifications": False, "extensions": []},
        "skills": [],
    }
    assert rfc8785.dumps(without_defaults(fragment, pb.AgentCard.DESCRIPTOR)) == (
        b'{"capabilities":{"pushNotifications":false,"streaming":false},'
        b'"description":"","name":"Example Agent","skills":[]}'
    )


@pytest.mark.parametrize("source", ["public", "extended"])
def test_a2a_1_0_section_8_4_1_rule_1_the_card_holds_no_defaults_to_remove(a2a, source):
    if source == "public":
        card = public_card(a2a)
    else:
        card = rpc_card(a2a, "GetExtendedAgentCard", "1.0")
    unsigned = {k: v for k, v in card.items() if k != "signatures"}
    stripped = without_defaults(unsigned, pb.AgentCard.DESCRIPTOR)
    assert stripped == unsigned
    # So the payload a defaults-removing verifier builds is the one signed.
    verify(a2a, {**stripped, "signatures": card["signatures"]})
