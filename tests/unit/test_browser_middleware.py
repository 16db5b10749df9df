"""The session, its user and its messages are the browser's (the admin's): an API request passes them by."""

from __future__ import annotations

from django.http import HttpResponse
from django.test import RequestFactory

from config.kernel.middleware import AuthenticationMiddleware, MessageMiddleware, SessionMiddleware


def test_an_api_request_gets_no_session_user_or_messages_and_any_other_request_gets_all_three():
    seen = {}

    def view(request):
        seen[request.path] = {name for name in ("session", "user", "_messages") if hasattr(request, name)}
        return HttpResponse("ok")

    chain = SessionMiddleware(AuthenticationMiddleware(MessageMiddleware(view)))
    for path in ("/api/orders", "/api", "/admin/", "/health/live", "/apis"):
        assert chain(RequestFactory().get(path)).status_code == 200

    assert seen["/api/orders"] == seen["/api"] == set()
    assert seen["/admin/"] == seen["/health/live"] == seen["/apis"] == {"session", "user", "_messages"}
