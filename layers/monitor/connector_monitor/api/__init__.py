"""The monitor's HTTP API (the Snapshot API function's routes) and the services behind it.

- ``resolver``: Powertools' resolver joining the routers; every error becomes an answer there.
- ``snapshot_routes``, ``registry_routes``: the routes and their parameters.
- ``snapshot_service``, ``registry_service``: what the routes (and monitorctl) call; no HTTP,
  no Powertools, no adapter.
- ``errors``, ``paging``, ``views``: the error family, the one paging rule, the JSON contract;
  ``parameters``: the query parameters the listing routes share.
- ``context``: what the routes call for one request (the handler's services, clock, logger).
- ``event_shape``: refusing an event that is not an HTTP API request.
- ``openapi``: openapi.json, generated from the routes.

Nothing is imported here: the handler loads the routes on its first request (cold start).
"""
