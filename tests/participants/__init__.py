"""Participants that live in the test suite only: apps installed by the tests that use them, never by the
product (tests/participants/shipping adds two steps to the order saga)."""
