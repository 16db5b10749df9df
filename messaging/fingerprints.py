"""The fingerprint of a dead letter's failure: the same for every letter of one failure, whatever ids, amounts or
times its detail names, so that a thousand letters of one outage are one group.

Kept apart from `messaging.deadletters`, with nothing but the standard library, because a migration backfills
the column with it: what it computes must not change under letters already stored.
"""

from __future__ import annotations

import hashlib
import re

FINGERPRINT_LENGTH = 12
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)
_HEX = re.compile(r"\b(?:0x)?(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SPACE = re.compile(r"\s+")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
_NORMALIZED_DETAIL = 300


def error_fingerprint(reason: str, traceback_text: str, detail: str) -> str:
    """A short hash of the reason, the exception's type (the last line of the traceback) and the detail with
    every id and number taken out."""
    parts = "\n".join((reason or "", exception_type(traceback_text), normalized_detail(detail)))
    return hashlib.sha256(parts.encode("utf-8", "backslashreplace")).hexdigest()[:FINGERPRINT_LENGTH]


def exception_type(traceback_text: str) -> str:
    """The type named on the last line of a formatted traceback ("payments.errors.Declined"), or ""."""
    for line in reversed((traceback_text or "").splitlines()):
        if line.strip():
            match = _EXCEPTION_LINE.match(line.strip())
            return match.group(1) if match else ""
    return ""


def normalized_detail(detail: str) -> str:
    """The detail without what differs between letters of one failure: UUIDs, long hex ids, numbers, spacing."""
    text = _UUID.sub("<id>", detail or "")
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACE.sub(" ", text).strip()[:_NORMALIZED_DETAIL]
