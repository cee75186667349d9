"""Key sets over time: discovery, background fetch, rotation, outages, refresh, rate limits.

Every test here starts its own stack with short timings, so the waits stay short.
"""

import secrets
import time

from httpc import METADATA_PATH, assert_passed, assert_refused
from idp import IdP, SigningKey
from netutil import wait_until
from stack import provider_entry


def timings(**overrides):
    jwks = {
        "refresh_secs": 600,
        "unknown_kid_refetch_secs": 2,
        "wait_ms": 2000,
        "fetch_timeout_ms": 1000,
        "retry_initial_ms": 200,
        "retry_max_ms": 1000,
    }
    jwks.update(overrides)
    return {"jwks": jwks}


def sleep_until_quiet(idp, seconds):
    """Sleeps until seconds have passed since the provider last served its JWKS."""
    times = idp.fetch_times()
    if times:
        remaining = times[-1] + seconds - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)


def same_process(stack, pid):
    proc = stack.gateway.proc
    return proc is not None and proc.pid == pid and proc.poll() is None


def test_keys_found_through_discovery_and_fetched_in_background(make_stack):
    idp = IdP(keys=("ES256",), issuer_path="/realms/attach", jwks_path="/realms/attach/certs")
    s = make_stack(idp=idp, config=timings())
    # No token request has been made: the fetch happens on its own.
    assert idp.wait_for_fetches(1, 10), f"JWKS never fetched; IdP saw {idp.requests()}"
    assert idp.discovery_fetches >= 1
    discovery_at = idp.fetch_times(idp.discovery_path)[0]
    assert discovery_at <= idp.fetch_times()[0], "JWKS fetched before discovery"
    assert_passed(s.get("/", token=s.token(sub="realm-user")), s.upstream, "realm-user")


def test_configured_jwks_uri_skips_discovery(make_stack):
    idp = IdP(keys=("EdDSA",), jwks_path="/other/keys")
    config = timings()
    config["providers"] = [provider_entry(idp, jwks_uri=idp.jwks_uri)]
    s = make_stack(idp=idp, provider="config", config=config)
    assert_passed(s.get("/", token=s.token()), s.upstream, "user-42")
    assert idp.jwks_fetches >= 1
    assert idp.discovery_fetches == 0, idp.requests()


def test_new_kid_passes_without_restart(make_stack):
    s = make_stack(config=timings(unknown_kid_refetch_secs=2))
    pid = s.gateway.proc.pid
    old_token = s.token(sub="before")
    assert_passed(s.get("/", token=old_token), s.upstream, "before")

    sleep_until_quiet(s.idp, 2.5)
    before = s.idp.jwks_fetches
    new_key = s.idp.add_key("RS256", first=True)
    s.upstream.clear()
    resp = s.get("/", token=s.idp.token(new_key, sub="after"))
    assert_passed(resp, s.upstream, "after")
    assert s.idp.jwks_fetches == before + 1, "the unknown kid should cause exactly one refetch"
    assert same_process(s, pid), "the gateway restarted"

    # The old key is still published and keeps working.
    s.upstream.clear()
    assert_passed(s.get("/", token=s.token(s.idp.keys[1], sub="before")), s.upstream, "before")


def test_rotation_with_retired_key(make_stack):
    """Rotate to a new key and retire the old one: the new kid passes at once,
    tokens from the retired key are refused once the gateway refetches."""
    s = make_stack(config=timings(unknown_kid_refetch_secs=2))
    old = s.idp.key
    assert_passed(s.get("/", token=s.token(sub="u1")), s.upstream, "u1")
    sleep_until_quiet(s.idp, 2.5)
    new = s.idp.rotate()
    s.upstream.clear()
    assert_passed(s.get("/", token=s.idp.token(new, sub="u2")), s.upstream, "u2")
    s.upstream.clear()
    resp = s.get("/", token=s.idp.token(old, sub="u3"))
    assert_refused(resp, s.resource, 401, "invalid_token", secrets=[old.kid, new.kid])
    assert s.upstream.requests == []


def test_unknown_kid_flood_is_rate_limited(make_stack):
    window = 5
    s = make_stack(config=timings(unknown_kid_refetch_secs=window))
    assert s.idp.wait_for_fetches(1, 10)
    assert_passed(s.get("/", token=s.token()), s.upstream, "user-42")
    s.upstream.clear()
    sleep_until_quiet(s.idp, window + 0.5)

    jwks_before, discovery_before = s.idp.jwks_fetches, s.idp.discovery_fetches
    stray = SigningKey("RS256")
    started = time.monotonic()
    for _ in range(50):
        stray.kid = "random-" + secrets.token_hex(8)
        resp = s.get("/v1/items", token=s.idp.token(stray))
        assert_refused(resp, s.resource, 401, "invalid_token", secrets=[stray.kid])
    elapsed = time.monotonic() - started
    allowed = 1 + int(elapsed // window)
    jwks_delta = s.idp.jwks_fetches - jwks_before
    discovery_delta = s.idp.discovery_fetches - discovery_before
    assert jwks_delta <= allowed, (
        f"{jwks_delta} JWKS fetches for 50 unknown kids in {elapsed:.1f}s (window {window}s)"
    )
    assert discovery_delta <= allowed, f"{discovery_delta} discovery fetches"
    assert s.upstream.requests == []

    # The limiter only delays: once the window is over, a newly published kid passes.
    sleep_until_quiet(s.idp, window + 0.5)
    key = s.idp.add_key("ES256")
    assert_passed(s.get("/", token=s.idp.token(key, sub="later")), s.upstream, "later")


def test_idp_down_at_start_gives_503_then_recovers_without_restart(make_stack):
    s = make_stack(idp_up=False, config=timings(wait_ms=1500))
    pid = s.gateway.proc.pid
    token = s.token(sub="patient")

    started = time.monotonic()
    resp = s.get("/v1/items", token=token)
    elapsed = time.monotonic() - started
    assert resp.status == 503, f"keys cannot be loaded: expected 503, got {resp!r}"
    assert elapsed < 1.5 + 3, f"503 took {elapsed:.1f}s with wait_ms=1500"
    assert s.idp.origin not in resp.text and str(s.idp.port) not in resp.text, resp
    assert s.upstream.requests == []

    # Requests that need no key are unaffected by the outage.
    assert_refused(s.get("/v1/items"), s.resource, 401, None)
    assert s.get(METADATA_PATH).status == 200
    assert s.upstream.requests == []

    s.idp.start()

    def passes():
        s.upstream.clear()
        return s.get("/v1/items", token=token).status == 200

    assert wait_until(passes, 20, interval=0.2), (
        f"still refused 20s after the IdP came up; IdP saw {s.idp.requests()}"
    )
    s.upstream.clear()
    assert_passed(s.get("/v1/items", token=s.token(sub="patient")), s.upstream, "patient")
    assert same_process(s, pid), "the gateway restarted"


def test_first_request_waits_for_slow_keys(make_stack):
    idp = IdP()
    idp.delay_secs = 1.0
    s = make_stack(idp=idp, config=timings(wait_ms=5000, fetch_timeout_ms=3000))
    resp = s.get("/", token=s.token(sub="early"))
    assert_passed(resp, s.upstream, "early")


def test_unresponsive_idp_gives_503_within_wait_ms(make_stack):
    idp = IdP()
    idp.delay_secs = 30
    s = make_stack(idp=idp, config=timings(wait_ms=1500, fetch_timeout_ms=1000))
    started = time.monotonic()
    resp = s.get("/v1/items", token=s.token())
    elapsed = time.monotonic() - started
    assert resp.status == 503, resp
    assert elapsed < 1.5 + 3, f"503 took {elapsed:.1f}s with wait_ms=1500"
    assert s.upstream.requests == []
    idp.delay_secs = 0

    def passes():
        s.upstream.clear()
        return s.get("/", token=s.token(sub="finally")).status == 200

    assert wait_until(passes, 20, interval=0.2), f"IdP saw {idp.requests()}"


def test_refresh_failure_keeps_old_keys(make_stack):
    s = make_stack(config=timings(refresh_secs=10))
    assert_passed(s.get("/", token=s.token(sub="steady")), s.upstream, "steady")
    seen = len(s.idp.requests())
    s.idp.fail_status = 500
    assert wait_until(lambda: len(s.idp.requests()) > seen, 20), "no refresh was attempted"
    time.sleep(0.5)
    for sub in ("steady-2", "steady-3"):
        s.upstream.clear()
        assert_passed(s.get("/", token=s.token(sub=sub)), s.upstream, sub)


def test_periodic_refresh_picks_up_key_changes(make_stack):
    s = make_stack(config=timings(refresh_secs=10, unknown_kid_refetch_secs=600))
    assert s.idp.wait_for_fetches(1, 10)
    old = s.idp.key
    assert_passed(s.get("/", token=s.token(sub="u1")), s.upstream, "u1")
    fetched = s.idp.jwks_fetches
    new = s.idp.rotate()
    assert s.idp.wait_for_fetches(fetched + 1, 20), "no periodic refresh within 20s"
    time.sleep(0.5)
    s.upstream.clear()
    assert_passed(s.get("/", token=s.idp.token(new, sub="u2")), s.upstream, "u2")
    s.upstream.clear()
    resp = s.get("/", token=s.idp.token(old, sub="u3"))
    assert_refused(resp, s.resource, 401, "invalid_token", secrets=[old.kid, new.kid])
    assert s.upstream.requests == []


def test_keys_fetched_once_for_all_workers(make_stack):
    s = make_stack(config=timings(), concurrency=2)
    assert s.idp.wait_for_fetches(1, 10)
    time.sleep(2)
    for i in range(12):
        s.upstream.clear()
        assert_passed(s.get("/", token=s.token(sub=f"w{i}")), s.upstream, f"w{i}")
    assert s.idp.jwks_fetches == 1, f"JWKS fetched {s.idp.jwks_fetches} times by 2 workers"
