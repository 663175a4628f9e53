"""Every recorded application event and answer under tests/fixtures/bitrix24/app_events/ names
the source it was taken from, and the raw forms are what PHP's http_build_query writes: one
form-encoded line with bracket keys, `event` first and `auth` last."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitrix24" / "app_events"
FORMS = sorted(FIXTURES.glob("*.form"))
ANSWERS = sorted(FIXTURES.glob("*.json"))
SOURCE_REPOS = ("bitrix24/b24restdocs", "bitrix24/b24phpsdk", "bitrix24/b24pysdk",
                "yuliai/bitrix-modules", "tests/fixtures/bitrix24/")  # fmt: skip


def test_there_are_forms_and_answers() -> None:
    assert {f.stem for f in FORMS} >= {"ONAPPINSTALL", "ONAPPUNINSTALL", "ONAPPUPDATE",
                                       "ONIMCONNECTORLINEDELETE"}  # fmt: skip
    assert {f.stem for f in ANSWERS} >= {"app.info", "event.bind.already_binded"}


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.stem)
def test_each_form_has_a_sibling_source_and_the_wire_shape(form: Path) -> None:
    source = form.with_name(form.name + ".source").read_text()
    assert any(repo in source for repo in SOURCE_REPOS)
    pairs = parse_qsl(form.read_text().strip(), keep_blank_values=True, strict_parsing=True)
    names = [key for key, _ in pairs]
    assert names[:2] == ["event", "event_handler_id"]
    assert dict(pairs)["event"] == form.stem
    assert names.index("ts") < names.index("auth[domain]")
    assert all(key.startswith("auth[") for key in names[names.index("ts") + 1 :])
    assert names[-1] == "auth[application_token]"


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda f: f.stem)
def test_each_answer_names_its_source(answer: Path) -> None:
    recorded = json.loads(answer.read_text())
    assert set(recorded) == {"source", "http_status", "body"}
    assert any(repo in recorded["source"] for repo in SOURCE_REPOS)
