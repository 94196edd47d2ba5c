"""Per-field problems of a validation failure (ERR_4013) read in the client's language."""

import uuid
from enum import StrEnum
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError

from rendio.platform import i18n
from rendio.platform.validation import field_problems


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


class Form(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=2, max_length=3)
    count: int = Field(ge=1, le=5)
    ratio: float = Field(gt=0, lt=1)
    kind: Literal["a", "b", "c"]
    color: Color
    tags: list[str] = Field(max_length=2)
    link: HttpUrl
    ref: uuid.UUID
    flag: bool
    needed: str


def problems(data: dict[str, Any], language: str) -> dict[str, str]:
    try:
        Form.model_validate(data)
    except ValidationError as error:
        return {p["field"]: p["problem"] for p in field_problems(error.errors(), language=language)}
    raise AssertionError("the form validated")


BAD = {
    "name": "abcd",
    "count": 9,
    "ratio": 0,
    "kind": "z",
    "color": "green",
    "tags": ["x", "y", "z"],
    "link": "not a url",
    "ref": "nope",
    "flag": "maybe",
    "surplus": 1,
}
EXPECTED = {
    "tr": {
        "name": "En fazla 3 karakter olmalıdır.",
        "count": "En fazla 5 olmalıdır.",
        "ratio": "0 değerinden büyük olmalıdır.",
        "kind": "Şunlardan biri olmalıdır: 'a', 'b' veya 'c'.",
        "color": "Şunlardan biri olmalıdır: 'red' veya 'blue'.",
        "tags": "En fazla 2 öğe içermelidir.",
        "link": "Geçerli bir URL olmalıdır.",
        "ref": "Geçerli bir UUID olmalıdır.",
        "flag": "true veya false olmalıdır.",
        "needed": "Bu alan zorunludur.",
        "surplus": "Bu alana izin verilmiyor.",
    },
    "es": {
        "name": "Debe tener como máximo 3 caracteres.",
        "count": "Debe ser como máximo 5.",
        "ratio": "Debe ser mayor que 0.",
        "kind": "Debe ser uno de estos valores: 'a', 'b' o 'c'.",
        "color": "Debe ser uno de estos valores: 'red' o 'blue'.",
        "tags": "Debe tener como máximo 2 elementos.",
        "link": "Debe ser una URL válida.",
        "ref": "Debe ser un UUID válido.",
        "flag": "Debe ser true o false.",
        "needed": "Este campo es obligatorio.",
        "surplus": "Este campo no está permitido.",
    },
}


@pytest.mark.parametrize("language", ["tr", "es"])
def test_common_problems_are_localized(language: str) -> None:
    assert problems(BAD, language) == EXPECTED[language]


def test_english_keeps_pydantic_texts() -> None:
    english = problems(BAD, "en")
    assert english["needed"] == "Field required"
    assert english["name"] == "String should have at most 3 characters"
    assert english["surplus"] == "Extra inputs are not permitted"


def test_lengths_take_their_plural_form() -> None:
    short = {**BAD, "name": "a", "count": "x", "ratio": 2}
    assert problems(short, "es")["name"] == "Debe tener al menos 2 caracteres."
    assert problems(short, "tr")["count"] == "Tam sayı olmalıdır."
    assert problems(short, "es")["ratio"] == "Debe ser menor que 1."
    half = [{"loc": ("x",), "msg": "less", "type": "less_than", "ctx": {"lt": 0.5}}]
    assert field_problems(half, language="es")[0]["problem"] == "Debe ser menor que 0,5."
    assert i18n.field_problem("string_too_long", "es", {"max_length": 1}) == (
        "Debe tener como máximo 1 carácter."
    )
    assert i18n.field_problem("too_short", "es", {"min_length": 1}) == (
        "Debe tener al menos 1 elemento."
    )


def test_unknown_types_fall_back_to_english() -> None:
    errors = [{"loc": ("x",), "msg": "Value error, odd", "type": "value_error", "ctx": {}}]
    assert field_problems(errors, language="tr") == [{"field": "x", "problem": "Value error, odd"}]
    assert i18n.field_problem("no_such_type", "es", {}) is None


@pytest.mark.parametrize(
    ("language", "problem"),
    [("en", "Field required"), ("tr", "Bu alan zorunludur."), ("es", "Este campo es obligatorio.")],
)
async def test_request_problems_follow_accept_language(
    client: httpx.AsyncClient, language: str, problem: str
) -> None:
    refused = await client.post(
        "/functions/v1/device-check",
        json={"device_id": "install-1"},
        headers={"Accept-Language": f"{language};q=0.9, de"},
    )
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "ERR_4013"
    assert error["details"]["fields"] == [{"field": "body.device_token", "problem": problem}]
    assert error["message"] == i18n.message("ERR_4013", language)


async def test_query_problems_are_localized_too(client: httpx.AsyncClient) -> None:
    from tests.helpers.clients import guest

    user = await guest(client)
    refused = await client.get(
        "/functions/v1/get-video-jobs",
        params={"limit": 500},
        headers={**user.headers, "Accept-Language": "es"},
    )
    assert refused.status_code == 422
    [field] = refused.json()["error"]["details"]["fields"]
    assert field == {"field": "query.limit", "problem": "Debe ser como máximo 100."}
