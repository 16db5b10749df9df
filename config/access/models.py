"""API tokens and the audit log: who may call the API, and what operators did."""

from __future__ import annotations

from django.db import models


class ApiToken(models.Model):
    """A bearer token for /api/. Only the SHA-256 of the token is stored; the token itself is shown once.

    A customer token is bound to one `customer_id`; an operator token to none.
    """

    class Role(models.TextChoices):
        OPERATOR = "operator"
        CUSTOMER = "customer"

    # sha256 of a 256-bit random secret: a lookup key, not a password hash, since the secret cannot be guessed.
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The token's first characters, so that an operator can tell tokens apart in the admin.
    prefix = models.CharField(max_length=12, editable=False)
    role = models.CharField(max_length=16, choices=Role.choices)
    customer_id = models.CharField(max_length=64, null=True, blank=True)
    label = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="api_token_customer_bound_iff_customer",
                condition=(models.Q(role="customer", customer_id__isnull=False) & ~models.Q(customer_id=""))
                | models.Q(role="operator", customer_id__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        who = f"customer {self.customer_id}" if self.role == self.Role.CUSTOMER else "operator"
        return f"{self.prefix}… ({who}{', revoked' if self.revoked_at else ''})"


class AuditEntry(models.Model):
    """One operator action: who did what to which object, and when. Written by `audit_record()` only."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100, db_index=True)
    target = models.CharField(max_length=200, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"


class RateLimit(models.Model):
    """The state of one rate limit (GCRA): when the next request would arrive if all so far had been evenly
    spaced. One row per limited key, written by `rate_limit_take()` in one statement."""

    key = models.CharField(max_length=200, primary_key=True)
    # Seconds since the epoch, a float: the arithmetic stays in one portable SQL statement.
    theoretical_arrival = models.FloatField()

    def __str__(self) -> str:
        return self.key
