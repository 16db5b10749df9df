"""The tokens a web process has looked up, kept for as long as it hears of every change to them.

Every API request presents its token, and its lookup was a statement of its own beside a status read's one, and
a third of that read's CPU. A process keeps each live token it has looked up for API_TOKEN_CACHE_S, but only
while its listener hears PostgreSQL's notices (config/kernel/postgresql/notices.py): a trigger (migration
config 0004) sends one at the commit of any revocation, change or deletion of a token, whoever made it (the
command, the admin, an operator's SQL), and the listener forgets that token at once. A revocation therefore
takes effect in every process as soon as its notice arrives, and within TRUST_S if the notice is lost with the
listener's connection. SQLite sends no notices: there every request looks its token up.
"""

from __future__ import annotations

from django.conf import settings

from config.kernel.postgresql.notices import KeptWhileHeard, NoticeListener

CHANNEL = "sagaflow_api_token"  # the trigger's; its payload is the token's hash, or "*" for all of them


class RecentTokens(KeptWhileHeard):
    """The live tokens looked up lately, by hash."""

    def __init__(self) -> None:
        super().__init__(lambda: settings.API_TOKEN_CACHE_S)


recent_tokens = RecentTokens()
listener = NoticeListener(recent_tokens, CHANNEL, what="API token", enabled=lambda: settings.API_TOKEN_CACHE_S > 0)
