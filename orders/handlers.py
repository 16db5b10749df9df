"""What the orders context consumes: its own `webhook.deliver`, one POST of how an order ended to one endpoint.

The saga records how an order ended, in its own transaction; `order.created`, `order.completed` and
`order.failed` are published for anyone else who wants them.
"""

from orders.webhooks import DELIVER, handle_deliver

HANDLERS = {DELIVER: handle_deliver}
