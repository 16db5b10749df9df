"""A warehouse that packs and ships orders: two steps added after the order saga's stock, from outside the
product, as a team would add its own (see `installed()` in tests/integration/test_saga_fourth_step.py).

- `packing.pack` -> `packing.packed` | `packing.failed`, undone by `packing.unpack` -> `packing.unpacked`;
- `shipping.dispatch` -> `shipping.dispatched` | `shipping.failed` (a customer it cannot deliver to), undone
  by `shipping.cancel` -> `shipping.cancelled`.

Each reply carries `code` and `reason` when it is a failure; each compensation is idempotent, answers even
when there was nothing to undo, and leaves a row that makes the warehouse refuse later work for the order.
"""
