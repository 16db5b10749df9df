"""The order saga with the warehouse's two steps after the stock: payment, inventory, packing, shipping."""

from __future__ import annotations

import dataclasses

from saga.definition import CompensateByCommand, Step
from saga.steps import ORDER_SAGA

PACKING = Step(
    name="packing",
    command="packing.pack",
    success="packing.packed",
    failures=("packing.failed",),
    pending_state="PACKING_PENDING",
    deadline="PACKING_DEADLINE_S",
    compensation=CompensateByCommand(
        command="packing.unpack",
        reply="packing.unpacked",
        state="UNPACKING",
        resend_on_timeout=True,
        deadline="PACKING_DEADLINE_S",
    ),
)

SHIPPING = Step(
    name="shipping",
    command="shipping.dispatch",
    success="shipping.dispatched",
    failures=("shipping.failed",),
    pending_state="SHIPPING_PENDING",
    deadline="SHIPPING_DEADLINE_S",
    compensation=CompensateByCommand(
        command="shipping.cancel",
        reply="shipping.cancelled",
        state="CANCELLING_SHIPMENT",
        resend_on_timeout=True,
        deadline="SHIPPING_DEADLINE_S",
    ),
)

FOUR_STEPS = dataclasses.replace(ORDER_SAGA, steps=(*ORDER_SAGA.steps, PACKING, SHIPPING))
