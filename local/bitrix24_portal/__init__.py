"""Local Bitrix24 portal: a real HTTP server that speaks the REST and OAuth shapes the monitor uses.

Used by the integration tests, the benchmark and the local runner. One server hosts any number of
portals (by path prefix) and one OAuth server shared by all of them, like oauth.bitrix.info:

    REST   POST {url}/{domain}/rest/{method}[.json]   JSON or form body (bracket keys), `auth` in
           body or query; GET with a query string works too.
    OAuth  GET|POST {url}/oauth/token/?grant_type=refresh_token&client_id=…&client_secret=…
           &refresh_token=…   (GET query or form POST)
    app.info GET|POST {url}/rest/app.info   the OAuth server's: which application and installation
           an access token belongs to (`auth`); `server_endpoint` in events and OAuth answers
    Authorize  GET {url}/{domain}/oauth/authorize/?client_id=…&state=…   an administrator signed
           in: 302 to the app's redirect URI (`set_redirect_uri`) with code, state, domain,
           member_id, scope, server_domain; the code buys a pair once, within `code_ttl` (30 s),
           with grant_type=authorization_code on /oauth/token/

Methods: imconnector.status, imconnector.list, imconnector.activate, imopenlines.config.list.get,
server.time, batch, app.info, event.bind, event.get and event.unbind. Refresh tokens are
single-use; a refresh retires the access token issued with the old pair (it answers 401
expired_token from then on).

In code::

    with LocalPortal() as portal:
        portal.add_portal("a.bitrix24.com", connectors={"myconnector": "My"}, lines={12: "Sales"})
        portal.connect("a.bitrix24.com", "myconnector", 12)
        secret = {"portals": {"a.bitrix24.com": portal.credentials("a.bitrix24.com")}}
        portal.inject("a.bitrix24.com", PortalFault.EXPIRED_TOKEN, count=1)

Each portal gets an application of its own unless told otherwise. An integrator's one
application installed on many portals, as on Bitrix24 (the OAuth server finds the portal by the
refresh token, then checks client_id and client_secret against that token's application)::

    client_id, client_secret = portal.add_shared_app("monitor")
    portal.add_portal("b.bitrix24.com", app=client_id)  # b's application is the shared one
    entry = portal.credentials("b.bitrix24.com")        # a pair of the shared application
    other = portal.install("a.bitrix24.com", client_id)  # beside a's own; more pairs:
    more = portal.credentials("a.bitrix24.com", app=client_id)

Applications are installed, updated and removed as on Bitrix24: the portal posts the event, form
encoded with bracket keys (the shapes of tests/fixtures/bitrix24/app_events/), to an https URL
whose authority it is told to trust (`ca_bundle`) or to plain http on 127.0.0.1::

    delivery = portal.install_app(domain, "https://127.0.0.1:8443/install", app=client_id,
                                  ca_bundle=ca)  # ONAPPINSTALL with a fresh pair; the URL is
    portal.update_app(domain, "2")               # bound as its handler. ONAPPUPDATE, and
    portal.delete_line(domain, 12)               # ONIMCONNECTORLINEDELETE to bound handlers;
    portal.uninstall_app(domain, app=client_id)  # ONAPPUNINSTALL (no tokens), tokens die

`request_count()` and `refresh_count()` read counters, cheap for any number of portals.

`inject(..., method=m)` matches the HTTP-level method only ("batch", "imconnector.status"; "oauth"
targets that portal's refresh calls, which faults without a method never touch). Commands inside a
batch fail through `fail_command` instead.

Standalone, with a demo portal (demo.bitrix24.local, connector myconnector on lines 1, 2, 3)::

    python -m local.bitrix24_portal --port 8099 --demo

Flip things from another terminal through the control API (never reached by REST clients)::

    curl -s localhost:8099/_control/state
    curl -s -XPOST localhost:8099/_control/demo.bitrix24.local/status \\
         -d '{"connector": "myconnector", "line": 2, "configured": true, "error": true}'
    curl -s -XPOST localhost:8099/_control/demo.bitrix24.local/fault \\
         -d '{"fault": "http_502", "count": 3}'      # also "method", "delay"
    curl -s -XPOST localhost:8099/_control/demo.bitrix24.local/clear
    curl -s -XPOST localhost:8099/_control/demo.bitrix24.local/expire     # access tokens expire
    curl -s -XPOST localhost:8099/_control/demo.bitrix24.local/revoke     # re-authorisation needed
    curl -s -XPOST localhost:8099/_control/demo.bitrix24.local/credentials  # fresh token pair
                                                    # (of another app: -d '{"app": client_id}')
    curl -s -XPOST localhost:8099/_control/demo.bitrix24.local/install \
         -d '{"url": "http://127.0.0.1:3000/install"}'  # also "app", "version", "ca_bundle"
    curl -s -XPOST localhost:8099/_control/demo.bitrix24.local/delete_line -d '{"line": 2}'
    curl -s -XPOST localhost:8099/_control/demo.bitrix24.local/uninstall  # also update

Install an application on the demo portal at start (prints its client id and secret)::

    python -m local.bitrix24_portal --tls --install-to https://127.0.0.1:3000/install \
        --ca-bundle the-handlers-ca.pem --redirect-uri https://127.0.0.1:3000/authorized

The server never logs; tokens and secrets appear only in `credentials()` and OAuth answers.
"""

from local.bitrix24_portal.apps import Delivery
from local.bitrix24_portal.protocol import DEMO_DOMAIN, ERRORS, PortalFault
from local.bitrix24_portal.server import LocalPortal
from local.bitrix24_portal.state import Binding, RecordedRequest

__all__ = [
    "DEMO_DOMAIN",
    "ERRORS",
    "Binding",
    "Delivery",
    "LocalPortal",
    "PortalFault",
    "RecordedRequest",
]
