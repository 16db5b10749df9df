"""The orders context consumes no message: the saga records how an order ended, in its own transaction.

Kept so that every context has the same rooms; `order.created`, `order.completed` and `order.failed` are
published for anyone else who wants them.
"""

HANDLERS: dict = {}
