"""documents/placement.py on its own: a translation's words, the source character each comes from, and the span of
words each inline element of a run takes, by alignment or, without one, by its relative place. Expected spans are
worked out by hand in each case's comment."""

from __future__ import annotations

import pytest

from mtx.documents.placement import Node, origins, place, tokens


def _spans(children, n=8, length=40, origin=None, real=None, span=None):
    """The spans `place` gives `children` of a run of `length` characters translated as `n` words."""
    root = Node(tag=None, start=0, end=length, children=children, span=span or (0, n))
    place(root, origin, real or [True] * n, length)
    return [c.span for c in children]


@pytest.mark.parametrize(
    "start, end, want",
    [
        (10, 20, (2, 4)),  # 10/40 of 8 words = 2, 20/40 of 8 = 4
        (13, 27, (3, 5)),  # 2.6 and 5.4 round to 3 and 5
        (20, 20, (4, 4)),  # an empty element: no word, at its place
        (20, 21, (4, 5)),  # 4 and 4.2: an element with text takes a word at least
        (0, 3, (0, 1)),  # 0 and 0.6 -> 1
        (38, 40, (8, 8)),  # 7.6 -> 8: at the end, nothing left to take
        (35, 40, (7, 8)),  # 7 and 8
    ],
)
def test_without_alignments_an_element_takes_the_words_at_its_relative_place(start, end, want):
    assert _spans([Node(tag=None, start=start, end=end)]) == [want]


def test_an_element_takes_its_first_to_last_aligned_real_word():
    origin = [0, 5, 10, 12, 15, 25, 30, 35]  # the source character of each of 8 words
    assert _spans([Node(tag=None, start=10, end=20)], origin=origin) == [(2, 5)]  # words 2, 3, 4
    real = [True, True, True, True, False, True, True, True]  # word 4 is punctuation: not counted
    assert _spans([Node(tag=None, start=10, end=20)], origin=origin, real=real) == [(2, 4)]
    assert _spans([Node(tag=None, start=12, end=13)], origin=origin) == [(3, 4)]  # [start, end): 12 only
    assert _spans([Node(tag=None, start=11, end=12)], origin=origin) == [(2, 3)]  # 11.. nothing: 8 * 11/40 = 2.2
    # opaque (kept) elements and empty ones wrap nothing: they go before the first word aligned at or after them
    assert _spans([Node(tag=None, start=10, end=20, opaque=True)], origin=origin) == [(2, 2)]
    assert _spans([Node(tag=None, start=15, end=15)], origin=origin) == [(4, 4)]  # by place it would be 3
    assert _spans([Node(tag=None, start=36, end=36)], origin=origin) == [(8, 8)]  # after the last word
    assert _spans([Node(tag=None, start=36, end=36)]) == [(7, 7)]  # without alignments: by place, 8 * 36/40


def test_an_element_that_ends_a_sentence_takes_the_full_stop_after_it():
    real = [True, True, True, False, True, True, True, False]  # words 3 and 7 are punctuation
    origin = [0, 5, 10, 14, 16, 20, 30, 39]
    stop = Node(tag=None, start=0, end=15, stop=True)
    assert _spans([stop], origin=origin, real=real) == [(0, 4)]  # words 0-2, then the full stop (3)
    plain = Node(tag=None, start=0, end=15)
    assert _spans([plain], origin=origin, real=real) == [(0, 3)]
    word_after = Node(tag=None, start=16, end=21, stop=True)  # words 4, 5; word 6 is a real word: not taken
    assert _spans([word_after], origin=origin, real=real) == [(4, 6)]
    last = Node(tag=None, start=30, end=39, stop=True)  # word 6; then 7 is the stop, inside the run
    assert _spans([last], origin=origin, real=real) == [(6, 8)]
    to_the_end = Node(tag=None, start=30, end=40, stop=True)  # words 6 and 7, the run's last: nothing after
    assert _spans([to_the_end], origin=origin, real=[True] * 8) == [(6, 8)]
    inner = Node(tag=None, start=16, end=21, stop=True)  # ends where its parent does: the stop after is not its
    parent = Node(tag=None, start=16, end=21, children=[inner])
    assert _spans([parent], origin=origin, real=[True] * 6 + [False, True]) == [(4, 6)]
    assert inner.span == (4, 6)
    kept = Node(tag=None, start=0, end=15, stop=True, opaque=True)
    assert _spans([kept], origin=origin, real=real) == [(0, 0)]


def test_siblings_follow_each_other_and_children_stay_inside_their_parent():
    origin = [0, 5, 10, 12, 15, 25, 30, 35]
    first = Node(tag=None, start=0, end=31)  # words 0-6 aligned inside
    second = Node(tag=None, start=31, end=33)  # none aligned: by place, 8 * 31/40 = 6.2 -> 6, but after the first
    assert _spans([first, second], origin=origin) == [(0, 7), (7, 8)]
    # by place, inside a parent of words 2-5: a child at the run's start begins at the parent's first word
    inner = Node(tag=None, start=0, end=5)
    parent = Node(tag=None, start=10, end=30, children=[inner])
    assert _spans([parent]) == [(2, 6)] and inner.span == (2, 3)  # 0 and 1, moved up to 2: and one word at least
    late = Node(tag=None, start=35, end=40)
    parent = Node(tag=None, start=10, end=30, children=[late])
    assert _spans([parent]) == [(2, 6)] and late.span == (6, 6)  # 7 and 8: clipped down to the parent's end
    mid = Node(tag=None, start=20, end=25)
    parent = Node(tag=None, start=10, end=30, children=[mid])
    assert _spans([parent]) == [(2, 6)] and mid.span == (4, 5)


def test_tokens_split_punctuation_from_words_and_keep_where_each_starts():
    toks, spaces, starts = tokens("«Hallo», sagte er.  Gut")
    assert toks == ["«", "Hallo", "»,", "sagte", "er", ".", "Gut"]
    assert spaces == [True, False, False, True, True, False, True]
    assert starts == [0, 1, 6, 9, 15, 17, 20]
    assert tokens("") == ([], [], [])
    assert tokens("...") == (["..."], [True], [0])  # punctuation alone is one token


def test_origins_are_the_source_of_the_last_piece_starting_at_or_before():
    pairs = [(0, 0), (2, 5), (6, 9)]  # (target character, source character) of each piece
    assert origins([0, 1, 2, 3, 6, 10], pairs) == [0, 0, 5, 5, 9, 9]
    assert origins([0, 4], [(2, 5), (4, 7)]) == [5, 7]  # before the first piece: the first piece's source
