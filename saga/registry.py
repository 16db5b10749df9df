"""The saga in use, and what the installed apps give it.

- `definition()`: the SagaDefinition that the services, the handlers, the sweep and the payloads read: the
  setting SAGA_DEFINITION (a dotted path to one, or one), `saga.steps.ORDER_SAGA` by default.
- `payload(saga, routing_key)`: the payload of a message the saga sends. The app that handles a step's
  command builds that command's payload: its AppConfig's `saga_payloads()` returns {command: builder}, a
  builder taking the Saga row. The saga's own messages carry the order and the saga's reason: every
  compensation, late and repeated command `{order_id, reason}`, the completion event `{order_id}`, the
  failure event `{order_id, reason}`.
- `still_held(late_command)`: the app whose participant undoes a step on the failure event says which orders
  it still holds the step's work for: its AppConfig's `saga_holds()` returns {the step's late command: a
  function of an order id (or None, every order) giving a queryset of `order_id` values}. The sweep asks an
  ended saga found there again (its held input).
- `ended_listeners()`: what the apps that want to know how a saga ended give: its AppConfig's
  `saga_listeners()` returns functions taking `order_id`, `status` (the final state), `failure_reason` and
  `failure_detail`, called in the transaction that ends the saga (the orders context records the order's
  end). The saga imports none of them: they sit above it.

Found once, as the admin finds each app's admin module, and again after a test changes the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db.models import QuerySet
from django.utils.module_loading import import_string

from saga.definition import CompensateByCommand, DefinitionError, ReleasedOnFailure, SagaDefinition

if TYPE_CHECKING:
    from saga.models import Saga

DEFAULT_DEFINITION = "saga.steps.ORDER_SAGA"

PayloadBuilder = Callable[["Saga"], dict[str, Any]]
HeldOrders = Callable[[str | None], QuerySet]
EndedListener = Callable[..., None]


class _Found:
    """What the registry found for the settings of the moment: kept until a setting changes."""

    def __init__(self) -> None:
        self.definition = _load(getattr(settings, "SAGA_DEFINITION", DEFAULT_DEFINITION))
        self.payloads = _payload_builders(self.definition)
        self.holds = _holds(self.definition)
        self.listeners = _listeners()


_found: _Found | None = None


def _current() -> _Found:
    global _found
    if _found is None:
        _found = _Found()
    return _found


def definition() -> SagaDefinition:
    """The saga definition in use."""
    return (_found or _current()).definition


def payload(saga: Saga, routing_key: str) -> dict[str, Any]:
    """The payload of `routing_key`, a message the saga in use sends, for `saga`."""
    return (_found or _current()).payloads[routing_key](saga)


def still_held(late_command: str) -> HeldOrders:
    """Which orders still hold the work that `late_command` undoes. KeyError: no installed app says."""
    return (_found or _current()).holds[late_command]


def ended_listeners() -> tuple[EndedListener, ...]:
    """What to call, in its transaction, when a saga reaches a final state; in the order of INSTALLED_APPS."""
    return (_found or _current()).listeners


def forget(**kwargs: object) -> None:
    """Find everything again at the next call: a test changed the settings."""
    global _found
    _found = None


setting_changed.connect(forget, dispatch_uid="saga.registry.forget")


def _load(chosen: str | SagaDefinition) -> SagaDefinition:
    found = import_string(chosen) if isinstance(chosen, str) else chosen
    if not isinstance(found, SagaDefinition):
        raise ImproperlyConfigured(f"SAGA_DEFINITION must name a SagaDefinition, not a {type(found).__name__}")
    try:
        found.table  # noqa: B018 - builds and checks the table now, not at the first message
    except DefinitionError as error:
        named = f" {chosen!r}" if isinstance(chosen, str) else ""
        raise ImproperlyConfigured(f"SAGA_DEFINITION{named}: {error}") from None
    for state, deadline in found.deadlines.items():
        if isinstance(deadline, str) and not hasattr(settings, deadline):
            raise ImproperlyConfigured(f"{deadline}, the deadline of the saga's state {state}, is not a setting")
    return found


def _order(saga: Saga) -> dict[str, Any]:
    return {"order_id": str(saga.order_id)}


def _order_and_reason(saga: Saga) -> dict[str, Any]:
    # A late reply's compensation is sent by a saga that may not be failing (yet): it has no reason of its own.
    return {"order_id": str(saga.order_id), "reason": saga.failure_reason or "late_reply"}


def _payload_builders(definition: SagaDefinition) -> dict[str, PayloadBuilder]:
    builders: dict[str, PayloadBuilder] = {
        definition.completed_event: _order,
        definition.failed_event: _order_and_reason,
    }
    for step in definition.steps:
        if isinstance(step.compensation, CompensateByCommand):
            builders[step.compensation.command] = _order_and_reason
        elif isinstance(step.compensation, ReleasedOnFailure):
            builders[step.compensation.late_command] = _order_and_reason
    given = _from_apps("saga_payloads")
    for step in definition.steps:
        if step.command not in given:
            raise ImproperlyConfigured(
                f"no installed app builds the payload of {step.command} (step "
                f"{step.name}): its AppConfig's saga_payloads() should"
            )
        builders[step.command] = given[step.command]
    return builders


def _holds(definition: SagaDefinition) -> dict[str, HeldOrders]:
    given = _from_apps("saga_holds")
    holds = {}
    for step in definition.steps:
        if isinstance(step.compensation, ReleasedOnFailure) and step.compensation.held_input:
            late = step.compensation.late_command
            if late not in given:
                raise ImproperlyConfigured(
                    f"no installed app says which orders still hold what {late} undoes "
                    f"(the held input {step.compensation.held_input}): its AppConfig's "
                    "saga_holds() should"
                )
            holds[late] = given[late]
    return holds


def _listeners() -> tuple[EndedListener, ...]:
    listeners: list[EndedListener] = []
    for app in apps.get_app_configs():
        given = getattr(app, "saga_listeners", None)
        listeners += given() if given else []
    return tuple(listeners)


def _from_apps(method: str) -> dict[str, Any]:
    """What every installed app's AppConfig `method()` returns, merged; a key given by two apps is an error."""
    merged: dict[str, Any] = {}
    for app in apps.get_app_configs():
        given = getattr(app, method, None)
        for key, value in (given() if given else {}).items():
            if key in merged:
                raise ImproperlyConfigured(f"{key} is given by two apps' {method}(): {app.label} and another")
            merged[key] = value
    return merged
