"""What a process trusts of the tokens it kept (config/access/recent_tokens.py), on a clock the test moves."""

from __future__ import annotations

import socket

import pytest

from config.access.recent_tokens import RecentTokens
from config.kernel.postgresql import notices as module
from config.kernel.postgresql.notices import TRUST_S


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    return now


@pytest.fixture
def tokens(settings, clock) -> RecentTokens:
    settings.API_TOKEN_CACHE_S = 60.0
    kept = RecentTokens()
    kept.hearing(since_new_connection=True)
    return kept


def test_a_token_kept_while_hearing_is_trusted_for_api_token_cache_s(tokens, clock):
    tokens.keep("a", "record", tokens.generation())

    clock[0] += 60
    tokens.hearing()
    assert tokens.get("a") == "record"
    clock[0] += 0.5
    assert tokens.get("a") is None  # looked up 60.5 s ago


def test_nothing_is_trusted_once_the_database_has_not_answered_for_trust_s(tokens, clock):
    tokens.keep("a", "record", tokens.generation())
    clock[0] += TRUST_S + 0.1

    assert tokens.get("a") is None
    tokens.keep("b", "record", tokens.generation())
    tokens.hearing()  # the same connection answers again: its notices were not lost
    assert tokens.get("a") == "record" and tokens.get("b") is None


def test_a_new_connection_drops_what_was_kept_before_it(tokens):
    tokens.keep("a", "record", tokens.generation())

    tokens.hearing(since_new_connection=True)

    assert tokens.get("a") is None


def test_a_lookup_that_began_before_a_change_keeps_nothing(tokens):
    began = tokens.generation()
    tokens.forget("someone else's")  # a notice arrives while the lookup waits for its answer

    tokens.keep("a", "record", began)

    assert tokens.get("a") is None


def test_a_notice_forgets_its_token_and_a_truncation_forgets_all(tokens):
    for digest in "abc":
        tokens.keep(digest, digest, tokens.generation())

    tokens.forget("a")
    assert [tokens.get(d) for d in "abc"] == [None, "b", "c"]
    tokens.forget("*")
    assert [tokens.get(d) for d in "abc"] == [None, None, None]


def test_a_deaf_listener_keeps_nothing(tokens):
    tokens.keep("a", "record", tokens.generation())

    tokens.deaf()
    tokens.keep("b", "record", tokens.generation())

    assert tokens.get("a") is None and tokens.get("b") is None


def test_nothing_is_kept_without_a_listener(settings, clock):
    settings.API_TOKEN_CACHE_S = 60.0
    never_heard = RecentTokens()

    never_heard.keep("a", "record", never_heard.generation())

    assert never_heard.get("a") is None


def test_nothing_kept_is_trusted_while_something_waits_unread_on_the_listeners_socket(tokens):
    listener_side, server_side = socket.socketpair()
    with listener_side, server_side:
        tokens.listening_on(listener_side.fileno())
        tokens.keep("a", "record", tokens.generation())
        assert tokens.get("a") == "record"

        server_side.send(b"A notice")  # arrived, not yet read by the listener's thread
        assert tokens.get("a") is None

        listener_side.recv(100)
        assert tokens.get("a") == "record"
