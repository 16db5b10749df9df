from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from messaging.bus import Handler


class SagaConfig(AppConfig):
    name = "saga"
    default_auto_field = "django.db.models.BigAutoField"
    # The saga's consumer (its queue's name): it hears the participants' replies.
    consumer = "saga"

    def handlers(self) -> Mapping[str, Handler]:
        """The replies of the saga definition in use (saga.registry.definition())."""
        from saga import registry
        from saga.handlers import handlers

        return handlers(registry.definition())
