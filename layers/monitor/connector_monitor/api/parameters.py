"""Query parameters every listing route declares alike (the paging rule's, as the routes read
them); Powertools validates them and openapi.json describes them from here."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

CursorParameter = Annotated[
    str | None, Query(description="`next_cursor` of the previous page", max_length=2000)
]
