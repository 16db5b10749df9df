"""Customer accounts, payments for orders, and the ledger of every movement of money."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class Account(models.Model):
    customer_id = models.CharField(primary_key=True, max_length=64)
    opening_balance = models.DecimalField(max_digits=14, decimal_places=2)
    balance = models.DecimalField(max_digits=14, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer_id"]
        constraints = [models.CheckConstraint(condition=Q(balance__gte=0), name="account_balance_not_negative")]

    def __str__(self) -> str:
        return self.customer_id


class Payment(models.Model):
    """The payment of one order: captured, declined, or refunded after capture."""

    class Status(models.TextChoices):
        CAPTURED = "CAPTURED"
        DECLINED = "DECLINED"
        REFUNDED = "REFUNDED"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order_id = models.UUIDField(unique=True)
    customer_id = models.CharField(max_length=64, db_index=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=8)
    status = models.CharField(max_length=16, choices=Status.choices, db_index=True)
    decline_code = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)  # the default ordering
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"payment {self.order_id} {self.status}"


class LedgerEntry(models.Model):
    class Kind(models.TextChoices):
        DEPOSIT = "DEPOSIT"
        CAPTURE = "CAPTURE"
        REFUND = "REFUND"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["payment", "kind"],
                condition=Q(payment__isnull=False),
                name="ledger_one_capture_one_refund_per_payment",
            ),
        ]


class ClosedOrder(models.Model):
    """An order whose payment was settled by a refund: payments refuses any later charge for it."""

    order_id = models.UUIDField(primary_key=True)
    reason = models.CharField(max_length=64)
    closed_at = models.DateTimeField(auto_now_add=True)
