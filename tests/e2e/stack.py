"""One test stack: an IdP, an echo upstream, and a gateway between client and upstream."""

import contextlib

from gateway import Gateway
from idp import DEFAULT_AUDIENCE, IdP
from upstream import Upstream


class Stack:
    def __init__(self, idp, upstream, gateway):
        self.idp = idp
        self.upstream = upstream
        self.gateway = gateway

    @property
    def resource(self):
        return self.gateway.resource

    def request(self, *args, **kw):
        return self.gateway.request(*args, **kw)

    def get(self, path="/", **kw):
        return self.gateway.get(path, **kw)

    def token(self, *args, **kw):
        return self.idp.token(*args, **kw)


def provider_entry(idp, audiences=(DEFAULT_AUDIENCE,), **options):
    """A `providers[]` item of the plugin configuration for idp."""
    entry = {"issuer": idp.issuer, "audiences": list(audiences)}
    entry.update(options)
    return entry


@contextlib.contextmanager
def launch_stack(
    workdir,
    keys=("RS256",),
    idp=None,
    idp_up=True,
    provider="env",
    audiences=(DEFAULT_AUDIENCE,),
    config=None,
    upstream=None,
    **gateway_kw,
):
    """Starts IdP, upstream and gateway; stops all three on exit.

    provider="env" trusts the IdP through OIDC_ISSUER/OIDC_AUD; provider="config"
    leaves those unset and expects config["providers"] to name the issuers
    (build entries with provider_entry()); pass a prepared IdP to control its
    keys or issuer path. With idp_up=False the IdP's port is reserved but
    nothing listens there until the test calls stack.idp.start().
    upstream: a running engine stand-in (anything with a ``url``) to use
    instead of a fresh echo Upstream; its owner starts and stops it.
    """
    idp = idp or IdP(keys=keys)
    with contextlib.ExitStack() as cleanup:
        if idp_up:
            idp.start()
        cleanup.callback(idp.stop)
        if upstream is None:
            upstream = cleanup.enter_context(Upstream())
        gw = Gateway(
            workdir,
            engine_url=upstream.url,
            issuer=idp.issuer if provider == "env" else None,
            audiences=audiences,
            config=config,
            **gateway_kw,
        )
        cleanup.enter_context(gw)
        yield Stack(idp, upstream, gw)
