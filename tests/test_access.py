"""Who may use the server and how much (mtx/serve/access.py), without a server: the key file's rules, and the
limits per key and per address."""

from __future__ import annotations

import pytest

from mtx.errors import MtxError
from mtx.serve.access import MIN_KEY, Access, read_keys


def test_a_key_file_skips_bom_blank_lines_and_comments(tmp_path):
    path = tmp_path / "keys"
    path.write_text("\ufeff# team keys\n\nkey-one-1234  # Ann\n  key-two-5678\n#key-off-0000\n", encoding="utf-8")
    assert read_keys(path) == {"key-one-1234", "key-two-5678"}


@pytest.mark.parametrize(
    "text, words",
    [("", "no API key"), ("# only a comment\n", "no API key"), ("ok-key-1\nshort\n", "keys:2"),
     ("has a space-1234\n", "keys:1"), ("x" * (MIN_KEY - 1) + "\n", "keys:1")],
)  # fmt: skip
def test_bad_key_files_are_one_error_naming_the_line(tmp_path, text, words):
    path = tmp_path / "keys"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MtxError, match=words):
        read_keys(path)


def test_a_key_of_exactly_the_least_length_is_taken(tmp_path):
    assert MIN_KEY == 8  # the documented rule (docs/deploy.md)
    (tmp_path / "keys").write_text("k" * 8 + "\n", encoding="utf-8")
    assert read_keys(tmp_path / "keys") == {"k" * 8}
    (tmp_path / "keys").write_text("k" * 7 + "\n", encoding="utf-8")
    with pytest.raises(MtxError, match="8 or more characters"):
        read_keys(tmp_path / "keys")


def test_an_unreadable_key_file_is_one_error(tmp_path):
    (tmp_path / "keys").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(MtxError, match="cannot read API keys"):
        read_keys(tmp_path / "keys")
    with pytest.raises(MtxError, match="cannot read API keys"):
        read_keys(tmp_path / "missing")


def test_without_keys_a_client_is_its_address_whatever_key_it_sends():
    access = Access(frozenset(), 2)
    got = [access.check(f"made-up-{k}", "10.0.0.1") for k in range(3)]
    assert got[:2] == [None, None] and got[2] == (429, "Too many requests: at most 2 a minute")
    assert access.check(None, "10.0.0.2") is None  # another address: its own count


def test_with_keys_each_key_counts_and_refusals_count_against_the_address():
    access = Access(frozenset({"key-one-1234", "key-two-5678"}), 2)
    assert access.check(None, "a") == (403, "Please provide an API key (api_key)")
    assert access.check("wrong", "a") == (403, "Invalid API key")
    assert access.check("wrong", "a") == (429, "Too many requests: at most 2 a minute")  # guessing is limited
    assert [access.check("key-one-1234", "a") for _ in range(3)] == [None, None, (429, "Too many requests: at most "
                                                                                   "2 a minute")]  # fmt: skip
    assert access.check("key-two-5678", "a") is None  # each key its own count, not the address's


def test_a_limit_of_one_a_minute():
    access = Access(frozenset(), 1)
    assert access.check(None, "a") is None and access.check(None, "a") == (429, "Too many requests: at most 1 a minute")


def test_no_limit_counts_nothing():
    access = Access(frozenset(), 0)
    assert all(access.check(None, "a") is None for _ in range(100)) and access.limiter is None
    keyed = Access(frozenset({"key-one-1234"}), 0)
    assert all(keyed.check("wrong", "a") == (403, "Invalid API key") for _ in range(10))
