"""One request schema for every route (pydantic), from every body LibreTranslate accepts: JSON, an HTML form
(urlencoded) or multipart/form-data (a field given twice, e.g. q, is a list; a form's numbers are read as
numbers). A field that does not fit is a 400 that names it; a text with a lone surrogate (JSON's "\\ud800") is
refused here, before anything is queued."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

MAX_ALTERNATIVES = 8  # LibreTranslate's `alternatives` at most (the beam grows to alternatives + 1)
BODY_TYPES = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")


class RequestError(Exception):
    """A bad request: answered with `status` and {"error": message} (and `headers`)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("holds a lone surrogate (not Unicode text)") from None
    return text


def _no_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("must be a number, not true or false")
    return v


Text = Annotated[str, AfterValidator(_utf8)]
Texts = Text | list[Text]
Number = BeforeValidator(_no_bool)


class Fields(BaseModel):
    """Every field a route reads (each route reads those it needs); others are ignored, as LibreTranslate does."""

    model_config = ConfigDict(extra="ignore")

    q: Texts | None = None
    source: Text | None = None
    target: Text | None = None
    format: Literal["text", "html"] | None = None
    api_key: Text | None = None
    alternatives: Annotated[int, Number, Field(ge=0, le=MAX_ALTERNATIVES)] = 0
    prefix: Texts | None = None
    sample: Text | None = None
    temperature: Annotated[float, Number, Field(ge=0.01, le=100)] | None = None
    seed: Annotated[int, Number, Field(ge=0, lt=2**63)] | None = None
    no_repeat_ngram: Annotated[int, Number, Field(ge=0, le=64)] | None = None
    repetition_penalty: Annotated[float, Number, Field(gt=0, le=100)] | None = None
    glossary: dict[Text, Text] | Text | None = None  # {source term: target term}, or TSV lines (a form)
    constraints: list[list[Text]] | None = None  # target terms for each text of q
    translation: Texts | None = None
    sentences: bool = False  # the answer lists each text's sentences with their confidences
    file: Any = None  # an upload (/translate_file)

    def texts(self, name: str = "q") -> tuple[list[str], bool]:
        """A text field as a list, and whether it was one string."""
        got = getattr(self, name)
        if got is None:
            raise RequestError(400, f"missing {name}: the text to translate (a string or a list of strings)")
        return ([got], True) if isinstance(got, str) else (got, False)


HINTS = {
    "q": "q must be a string or a list of strings",
    "translation": "translation must be a string or a list of strings",
    "prefix": "prefix must be a string, or a list of strings with one for each text of q",
    "format": "format must be text or html",
    "alternatives": f"alternatives must be a whole number from 0 to {MAX_ALTERNATIVES}",
    "temperature": "temperature must be a number from 0.01 to 100",
    "seed": "seed must be a whole number >= 0",
    "no_repeat_ngram": "no_repeat_ngram must be a whole number from 0 (off) to 64",
    "repetition_penalty": "repetition_penalty must be a number above 0 and at most 100 (1: off)",
    "glossary": 'glossary must be an object {"source term": "target term"} or lines of source term<TAB>target term',
    "sentences": "sentences must be true or false",
    "constraints": 'constraints must be a list with one list of target terms for each text of q, e.g. [["term"]]',
}


REPEATS = ("no_repeat_ngram", "repetition_penalty")  # decode.* keys of the same names


def parse(data: Any) -> Fields:
    """The fields of a decoded body; a 400 naming the first field that does not fit."""
    if not isinstance(data, dict):
        raise RequestError(400, "the body must be a JSON object")
    try:
        return Fields.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        name = str(err["loc"][0]) if err["loc"] else "body"
        detail = err["msg"].removeprefix("Value error, ")
        raise RequestError(400, f"{HINTS.get(name, name)} ({detail})") from None


async def fields_of(headers, body: bytes) -> Fields:
    """The fields of a request, from its Content-Type and body (already read within the size limit)."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in BODY_TYPES:
        raise RequestError(415, f"send JSON, a form or multipart/form-data (got {ctype or 'none'!r})")
    if ctype == "application/json":
        try:
            return parse(json.loads(body))
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(400, f"malformed JSON: {e}") from None
        except RecursionError:
            raise RequestError(400, "malformed JSON: nested too deeply") from None

    async def whole():
        yield body
        yield b""

    parser = FormParser if ctype == "application/x-www-form-urlencoded" else MultiPartParser
    try:
        form = await parser(headers, whole()).parse()
    except (MultiPartException, UnicodeDecodeError, ValueError) as e:
        raise RequestError(400, f"malformed form: {e}") from None
    data: dict[str, Any] = {}
    for key in form:
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        data[key] = values[0] if len(values) == 1 else values
        if not values and isinstance(form[key], UploadFile):  # a file (/translate_file)
            data[key] = form[key]
    for key in ("alternatives", "seed", "temperature", "sample", "prefix", "api_key", "format", "glossary", *REPEATS):
        if data.get(key) == "":  # an empty form field: not given
            del data[key]
    return parse(data)
