"""The API tests' fixtures: the test client speaks as an operator; token_for() issues other tokens."""

from tests.api.conftest import inprocess, operator_client, token_for  # noqa: F401
