"""Two costs of moto's in-process emulation taken out of the measured time (not hidden: the
bench's README says so, tests/integration/test_bench_smoke.py checks the answers match). The
tests use them too (tests/conftest.py), and so do the benchmarks (bench/)."""

from __future__ import annotations

import contextlib
import copy
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from unittest import mock

from moto.core.serialize import BaseJSONSerializer
from moto.dynamodb import models as moto_dynamodb
from moto.dynamodb.models.table import Table as MotoTable


class _IndexCopy:
    """Stands in for the `copy` module inside moto's DynamoDB backend.

    moto's TransactWriteItems backs up, for its rollback, the whole table once per item of the
    transaction (`copy.deepcopy(table)`): quadratic in the table size, and nothing DynamoDB does.
    Here one backup per table and transaction copies the item index (hash -> range -> Item):
    enough to roll back Puts and Deletes, which are all the monitor's transactions hold.
    """

    def __init__(self) -> None:
        self.backups: dict[int, MotoTable] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if not isinstance(value, MotoTable):
            return copy.deepcopy(value, memo)
        if id(value) not in self.backups:
            backup = copy.copy(value)
            backup.items = defaultdict(
                dict, {h: dict(r) if isinstance(r, dict) else r for h, r in value.items.items()}
            )
            self.backups[id(value)] = backup
        return self.backups[id(value)]


def _wire_ready(value: Any) -> bool:
    """A DynamoDB value already in its JSON wire form: no bytes, no None, no model objects."""
    if isinstance(value, dict):
        return all(k not in ("B", "BS") and _wire_ready(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_wire_ready(v) for v in value)
    return isinstance(value, str | bool)


@contextlib.contextmanager
def quicker_moto() -> Iterator[None]:
    """Take two costs of moto's in-process emulation out of the measured time.

    - TransactWriteItems: see `_IndexCopy`.
    - Responses: moto serialises every DynamoDB attribute value by walking its shape model
      (~1 ms per returned item), which would dwarf the monitor's own work. A value already in
      wire form is written as it is; the JSON sent back is the same (tests/integration/
      test_bench_smoke.py compares both).
    """
    shim = _IndexCopy()
    original_transact = moto_dynamodb.DynamoDBBackend.transact_write_items
    original_structure = BaseJSONSerializer._serialize_type_structure

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        shim.backups.clear()
        try:
            original_transact(backend, transact_items)
        finally:
            shim.backups.clear()

    def serialize_structure(
        serializer: Any, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        if key and shape.name == "AttributeValue" and value and _wire_ready(value):
            serialized[serializer.get_serialized_name(shape, key)] = value
            return
        original_structure(serializer, serialized, value, shape, key)

    with (
        mock.patch.object(moto_dynamodb, "copy", shim),
        mock.patch.object(
            moto_dynamodb.DynamoDBBackend, "transact_write_items", transact_write_items
        ),
        mock.patch.object(BaseJSONSerializer, "_serialize_type_structure", serialize_structure),
    ):
        yield
