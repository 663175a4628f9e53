"""Bitrix24 Open Lines connector health monitor: the shared library of the Lambda functions.

Rooms:
- ``domain``: targets, check results, the alert state machine. Pure Python, no I/O.
- ``bitrix24``: the Bitrix24 REST client (batch, error taxonomy, OAuth refresh).
- ``aws``: adapters at the AWS edge (token store, state repository, alert publisher, lock).
- ``cycle``: one check run, wiring the adapters around the domain.
"""
