"""serve/schema.py on its own: every field's bounds, each side of each bound; the 400 that names a field; the
three body encodings and their Content-Types. No server: `parse` and `fields_of` are called directly."""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import pytest

from mtx.serve.schema import HINTS, MAX_ALTERNATIVES, Fields, RequestError, fields_of, parse


@pytest.mark.parametrize(
    "field, ok, bad",
    [
        ("alternatives", [0, MAX_ALTERNATIVES, 8], [-1, 9, True, 1.5, "two"]),
        ("temperature", [0.01, 1, 100], [0.0099, 100.01, 0, False]),
        ("seed", [0, 2**63 - 1], [-1, 2**63, True]),
        ("no_repeat_ngram", [0, 64], [-1, 65, True]),
        ("repetition_penalty", [1e-9, 1, 100], [0, -1, 100.5, True]),
        ("format", ["text", "html"], ["xml", ""]),
        ("q", ["a", ["a", "b"], []], [5, "\ud800", ["a", "\udfff"], {"a": 1}]),
        ("prefix", ["x", ["x", "y"]], [3, "\ud800"]),
        ("sentences", [True, False], ["maybe"]),
        ("glossary", [{"Hund": "dog"}, "Hund\tdog"], [["Hund", "dog"], {"Hund": 1}]),
        ("constraints", [[["dog"]], [["a", "b"], []]], [["dog"], [[1]], "dog"]),
    ],
)  # fmt: skip
def test_each_fields_bounds_hold_on_each_side(field, ok, bad):
    assert MAX_ALTERNATIVES == 8  # LibreTranslate's own bound
    for value in ok:
        assert getattr(parse({field: value}), field) == value, value
    for value in bad:
        with pytest.raises(RequestError) as e:
            parse({field: value})
        assert e.value.status == 400 and e.value.message.startswith(HINTS[field] + " ("), (value, e.value.message)


def test_defaults_unknown_fields_and_bodies_that_are_not_objects():
    f = parse({"q": "a", "colour": "blue"})  # others are ignored, as LibreTranslate does
    assert (f.alternatives, f.sentences, f.seed, f.temperature, f.format) == (0, False, None, None, None)
    assert not hasattr(f, "colour")
    for body in ([1, 2], "text", 3, None):
        with pytest.raises(RequestError, match="^the body must be a JSON object$") as e:
            parse(body)
        assert e.value.status == 400
    with pytest.raises(RequestError, match=r"^source \(") as e:  # a field without a hint is named as it is
        parse({"source": 5})
    assert e.value.status == 400


def test_texts_are_a_list_and_say_whether_they_were_one_string():
    assert Fields(q="a").texts() == (["a"], True)
    assert Fields(q=["a", "b"]).texts() == (["a", "b"], False)
    assert Fields(translation="t").texts("translation") == (["t"], True)
    with pytest.raises(RequestError, match="^missing q: the text to translate") as e:
        Fields().texts()
    assert e.value.status == 400
    with pytest.raises(RequestError, match="^missing translation"):
        Fields(q="a").texts("translation")


def _fields(ctype: str, body: bytes) -> Fields:
    from starlette.datastructures import Headers

    return asyncio.run(fields_of(Headers({"content-type": ctype}), body))


def test_json_forms_and_multipart_give_the_same_fields():
    want = {"q": ["ein hund", "eine katze"], "source": "de", "alternatives": 2, "seed": 7, "temperature": 0.5}
    as_json = _fields("application/json; charset=utf-8", json.dumps(want).encode())
    form = urllib.parse.urlencode([("q", "ein hund"), ("q", "eine katze"), ("source", "de"), ("alternatives", "2"),
                                   ("seed", "7"), ("temperature", "0.5")]).encode()  # fmt: skip
    as_form = _fields("Application/X-WWW-Form-Urlencoded", form)
    parts = (
        b"".join(
            b'--B\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (k.encode(), v.encode())
            for k, v in [
                ("q", "ein hund"),
                ("q", "eine katze"),
                ("source", "de"),
                ("alternatives", "2"),
                ("seed", "7"),
                ("temperature", "0.5"),
            ]  # fmt: skip
        )
        + b"--B--\r\n"
    )
    as_multipart = _fields("multipart/form-data; boundary=B", parts)
    for got in (as_json, as_form, as_multipart):
        assert {k: getattr(got, k) for k in want} == want
    one = _fields("application/x-www-form-urlencoded", b"q=ein+hund&seed=&alternatives=&format=&prefix=&api_key=")
    assert one.q == "ein hund"  # one value: a string; empty fields: not given
    assert (one.seed, one.alternatives, one.format, one.prefix, one.api_key) == (None, 0, None, None, None)


@pytest.mark.parametrize(
    "ctype, body, status, words",
    [
        ("text/plain", b"q=a", 415, "send JSON, a form or multipart/form-data (got 'text/plain')"),
        ("", b"{}", 415, "(got 'none')"),
        ("application/json", b"{not json", 400, "malformed JSON"),
        ("application/json", b"\xff\xfe{", 400, "malformed JSON"),
        ("application/json", b"[" * 100000 + b"]" * 100000, 400, "malformed JSON"),
        ("application/json", b'{"alternatives": 99}', 400, HINTS["alternatives"]),
        ("multipart/form-data; boundary=B", b"--B\r\nnot a part", 400, "malformed form"),
        ("application/x-www-form-urlencoded", b"alternatives=99", 400, HINTS["alternatives"]),
    ],
)
def test_bodies_that_do_not_fit_are_a_4xx_naming_why(ctype, body, status, words):
    with pytest.raises(RequestError) as e:
        _fields(ctype, body)
    assert e.value.status == status and words in e.value.message, e.value.message


def test_of_several_fields_that_do_not_fit_the_first_is_named():
    with pytest.raises(RequestError) as e:
        parse({"q": "a", "alternatives": 99, "seed": -1, "temperature": 0})
    assert e.value.message.startswith(HINTS["alternatives"])
