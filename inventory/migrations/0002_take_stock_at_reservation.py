"""A reservation now takes the goods out of `on_hand` at once (design §7), and inventory no longer hears the
saga's final events. The reservations that older versions held in `reserved` are settled here as those
events would have settled them: released for an order whose saga failed or was cancelled, taken for every
other (completed, or still in flight: if that one fails, its saga sends the release)."""

from django.db import migrations, models
from django.db.models import F


def take_held_reservations(apps, schema_editor):
    Product = apps.get_model("inventory", "Product")
    Reservation = apps.get_model("inventory", "Reservation")
    ReservationLine = apps.get_model("inventory", "ReservationLine")
    StockMovement = apps.get_model("inventory", "StockMovement")
    Saga = apps.get_model("saga", "Saga")
    held = Reservation.objects.filter(status="ACTIVE")
    ended = set(
        Saga.objects.filter(order_id__in=held.values("order_id"), state__in=["FAILED", "CANCELLED"]).values_list(
            "order_id", flat=True
        )
    )
    for line in ReservationLine.objects.filter(reservation__in=held).select_related("reservation"):
        order_id = line.reservation.order_id
        if order_id in ended:
            Product.objects.filter(sku=line.product_id).update(reserved=F("reserved") - line.quantity)
            continue
        Product.objects.filter(sku=line.product_id).update(
            on_hand=F("on_hand") - line.quantity, reserved=F("reserved") - line.quantity
        )
        StockMovement.objects.create(product_id=line.product_id, kind="COMMIT", quantity=line.quantity, order_id=order_id)
    held.filter(order_id__in=ended).update(status="RELEASED", reason="order_failed")
    held.update(status="COMMITTED")


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0001_initial"),
        ("saga", "0007_release_sent_at"),
    ]

    operations = [
        migrations.AlterField(
            model_name="stockmovement",
            name="kind",
            field=models.CharField(
                choices=[("INITIAL", "Initial"), ("RESTOCK", "Restock"), ("COMMIT", "Commit"), ("RETURN", "Return")],
                max_length=16,
            ),
        ),
        migrations.RunPython(take_held_reservations, migrations.RunPython.noop),
    ]
