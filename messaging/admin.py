import json
import logging
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from config.kernel.admin_mixins import LargeTableMixin, ReadOnlyAdmin
from messaging.correlation import printable
from messaging.deadletters import (
    InvalidCorrectionError,
    ReplayRefusedError,
    dead_letter_discard,
    dead_letter_edit_and_replay,
    dead_letter_label,
    dead_letter_replay,
)
from messaging.models import DeadLetter, DeadLetterGroup, InboxMessage, OutboxMessage, ReplayJob, WorkerHeartbeat
from messaging.replays import replay_job_pause, replay_job_resume, replay_job_start, replay_job_stop

logger = logging.getLogger(__name__)


class PublishedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("pending", "pending"), ("published", "published")]

    def queryset(self, request, queryset):
        if self.value() == "pending":
            return queryset.filter(published_at__isnull=True)
        if self.value() == "published":
            return queryset.filter(published_at__isnull=False)
        return queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(LargeTableMixin, ReadOnlyAdmin):
    list_display = [
        "message_id",
        "routing_key",
        "order_id",
        "created_at",
        "published_at",
        "lag",
        "way",
        "target_queue",
    ]
    list_filter = [PublishedFilter, "handed_off", "routing_key"]
    search_fields = ["message_id", "order_id", "correlation_id"]
    ordering = ["-id"]  # newest first through the primary key: created_at has an index for pending rows only

    @admin.display(description="lag")
    def lag(self, row: OutboxMessage) -> str:
        """From commit to the broker's confirm; for a pending row, how long it has waited so far."""
        if row.published_at is None:
            return f"pending {(timezone.now() - row.created_at).total_seconds():.1f} s"
        return f"{(row.published_at - row.created_at).total_seconds() * 1000:.0f} ms"

    @admin.display(description="way")
    def way(self, row: OutboxMessage) -> str:
        """How the row left, or is to leave: through the broker, or handed to the worker's own consumers."""
        if row.handed_off:
            return "handed off"
        if row.published_at is None and row.handoff_until is not None and row.handoff_until > timezone.now():
            return "leased for a hand-off"
        return "broker"


@admin.register(InboxMessage)
class InboxMessageAdmin(LargeTableMixin, ReadOnlyAdmin):
    list_display = ["consumer", "message_id", "routing_key", "processed_at"]
    list_filter = ["consumer", "routing_key"]
    search_fields = ["message_id"]


# A selection of more letters than this is replayed by a background job, not inside the request.
INLINE_REPLAY_LIMIT = 100


def may_operate(request) -> bool:
    """Replaying and discarding change what happens next, so viewing the dead letters is not enough."""
    return request.user.has_perm("messaging.change_deadletter")


@admin.register(DeadLetter)
class DeadLetterAdmin(LargeTableMixin, ReadOnlyAdmin):
    list_display = [
        "id",
        "message_id",
        "routing_key",
        "queue",
        "reason",
        "fingerprint",
        "attempts",
        "last_failed_at",
        "replayed_at",
        "discarded_at",
    ]
    list_filter = [
        "routing_key",
        "reason",
        "queue",
        "last_failed_at",
        ("replayed_at", admin.EmptyFieldListFilter),
        ("discarded_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["message_id", "body"]
    actions = ["replay", "discard"]
    change_form_template = "admin/messaging/deadletter/change_form.html"
    readonly_fields = ["history"]

    def has_operate_permission(self, request) -> bool:
        return may_operate(request)

    @admin.display(description="history")
    def history(self, letter: DeadLetter) -> str:
        """The letters of the same message before and after this one: replayed, failed again."""
        earlier, chain = letter.previous, list[DeadLetter]()
        while earlier is not None and len(chain) < 20:
            chain.append(earlier)
            earlier = earlier.previous
        later = list(letter.later_letters.order_by("pk")[:20])
        if not chain and not later:
            return "-"
        links = [self._link(row, "earlier") for row in reversed(chain)] + [self._link(row, "later") for row in later]
        return mark_safe(", ".join(links))  # noqa: S308 - each link is built by format_html

    @staticmethod
    def _link(row: DeadLetter, when: str) -> str:
        url = reverse("admin:messaging_deadletter_change", args=[row.pk])
        return format_html('<a href="{}">{} #{}</a> ({} attempts)', url, when, row.pk, row.attempts)

    def get_urls(self):
        own = [
            path("<int:pk>/replay/", self.admin_site.admin_view(self.replay_view), name="messaging_deadletter_replay"),
            path(
                "<int:pk>/discard/", self.admin_site.admin_view(self.discard_view), name="messaging_deadletter_discard"
            ),
            path("<int:pk>/edit/", self.admin_site.admin_view(self.edit_view), name="messaging_deadletter_edit"),
        ]
        return own + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {**(extra_context or {}), "may_operate": may_operate(request)}
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def _operated(self, request, pk: int) -> DeadLetter:
        if not may_operate(request):
            raise PermissionDenied
        return get_object_or_404(DeadLetter, pk=pk)

    def replay_view(self, request, pk: int):
        return require_POST(self._replay_one)(request, pk)

    def _replay_one(self, request, pk: int):
        letter = self._operated(request, pk)
        try:
            dead_letter_replay(letter=letter, by=request.user.get_username())
        except ReplayRefusedError as error:
            self.message_user(request, str(error), level=messages.WARNING)
        else:
            self.message_user(request, f"replayed {dead_letter_label(letter)}")
        return redirect("admin:messaging_deadletter_change", pk)

    def discard_view(self, request, pk: int):
        return require_POST(self._discard_one)(request, pk)

    def _discard_one(self, request, pk: int):
        letter = self._operated(request, pk)
        dead_letter_discard(letter=letter, by=request.user.get_username())
        self.message_user(request, f"discarded {dead_letter_label(letter)}")
        return redirect("admin:messaging_deadletter_change", pk)

    def edit_view(self, request, pk: int):
        """Correct a letter's payload and replay it: GET shows the form, POST checks the JSON and replays."""
        letter = self._operated(request, pk)
        text, problem = letter.edited_body or letter.body, ""
        if request.method == "POST":
            text = request.POST.get("payload", "")
            try:
                dead_letter_edit_and_replay(letter=letter, payload_text=text, by=request.user.get_username())
            except (InvalidCorrectionError, ReplayRefusedError) as error:
                problem = str(error)
            else:
                self.message_user(request, f"corrected and replayed {dead_letter_label(letter)}")
                return redirect("admin:messaging_deadletter_change", pk)
        else:
            try:
                text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            except (ValueError, RecursionError):
                pass  # shown as it is: the operator corrects it
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": letter,
            "title": f"Correct and replay {dead_letter_label(letter)}",
            "payload": text,
            "problem": problem,
        }
        return TemplateResponse(
            request, "admin/messaging/deadletter/edit.html", context, status=400 if problem else 200
        )

    @admin.action(description="Replay the selected dead letters (once each)", permissions=["operate"])
    def replay(self, request, queryset):
        """Replays each letter it can; says which it refused and why, and names those whose replay failed.
        More than INLINE_REPLAY_LIMIT letters go to a background job instead, as a group's do."""
        ids = list(queryset.values_list("pk", flat=True)[: INLINE_REPLAY_LIMIT + 1])
        if len(ids) > INLINE_REPLAY_LIMIT:
            job = replay_job_start(
                by=request.user.get_username(), letter_ids=list(queryset.values_list("pk", flat=True))
            )
            url = reverse("admin:messaging_replayjob_change", args=[job.pk])
            self.message_user(
                request, format_html('started <a href="{}">replay job {}</a> over {} letters', url, job.pk, job.total)
            )
            return
        failed = []
        for letter in queryset:
            try:
                dead_letter_replay(letter=letter, by=request.user.get_username())
            except ReplayRefusedError as error:
                self.message_user(request, str(error), level=messages.WARNING)
            except Exception as error:  # noqa: BLE001 - the others are still replayed, and the page still answers
                logger.exception("replay of dead letter %s failed", letter.pk)
                failed.append(f"{dead_letter_label(letter)}: {type(error).__name__}: {printable(error)}")
            else:
                self.message_user(request, f"replayed dead letter {letter.pk}")
        if failed:
            self.message_user(
                request, f"could not replay {len(failed)} dead letter(s): " + "; ".join(failed), level=messages.ERROR
            )

    @admin.action(description="Discard the selected dead letters", permissions=["operate"])
    def discard(self, request, queryset):
        for letter in queryset:
            dead_letter_discard(letter=letter, by=request.user.get_username())
        self.message_user(request, f"discarded {queryset.count()} dead letter(s)")


@admin.register(DeadLetterGroup)
class DeadLetterGroupAdmin(ReadOnlyAdmin):
    """The waiting dead letters by queue, type, reason and failure, with counts: what an operator acts on."""

    list_display = [
        "queue",
        "routing_key",
        "reason",
        "fingerprint",
        "letters_link",
        "first_seen",
        "last_seen",
        "sample",
    ]
    list_filter = ["queue", "routing_key", "reason"]
    ordering = ["-last_seen"]
    actions = ["replay_groups", "discard_groups"]
    list_per_page = 50

    def has_operate_permission(self, request) -> bool:
        return may_operate(request)

    @admin.display(description="letters", ordering="letters")
    def letters_link(self, group: DeadLetterGroup) -> str:
        query = urlencode({**group.selection(), "replayed_at__isnull": "True", "discarded_at__isnull": "True"})
        return format_html(
            '<a href="{}?{}">{}</a>', reverse("admin:messaging_deadletter_changelist"), query, group.letters
        )

    @admin.display(description="first letter's detail")
    def sample(self, group: DeadLetterGroup) -> str:
        detail = DeadLetter.objects.filter(pk=group.pk).values_list("detail", flat=True).first() or ""
        return printable(detail)[:200]

    @admin.action(description="Replay the whole of each selected group (in the background)", permissions=["operate"])
    def replay_groups(self, request, queryset):
        self._start(request, queryset, ReplayJob.REPLAY)

    @admin.action(description="Discard the whole of each selected group (in the background)", permissions=["operate"])
    def discard_groups(self, request, queryset):
        self._start(request, queryset, ReplayJob.DISCARD)

    def _start(self, request, groups, action: str) -> None:
        for group in groups:
            job = replay_job_start(by=request.user.get_username(), action=action, **group.selection())
            url = reverse("admin:messaging_replayjob_change", args=[job.pk])
            self.message_user(
                request,
                format_html('started <a href="{}">{} job {}</a> over {} letters', url, action, job.pk, job.total),
            )


@admin.register(ReplayJob)
class ReplayJobAdmin(ReadOnlyAdmin):
    """The replays and discards of groups: how far each got, and the means to pause, resume or stop it."""

    list_display = ["id", "action", "selection", "state", "progress", "rate_per_s", "started_by", "created_at"]
    list_filter = ["state", "action"]
    actions = ["pause", "resume", "stop"]
    readonly_fields = ["progress", "selection"]

    def has_operate_permission(self, request) -> bool:
        return may_operate(request)

    @admin.display(description="progress")
    def progress(self, job: ReplayJob) -> str:
        through = job.done + job.refused + job.failed
        percent = 100 * through / job.total if job.total else 100
        counts = f"{job.done} {job.action}ed, {job.refused} refused, {job.failed} failed"
        return f"{through}/{job.total} ({percent:.0f}%): {counts}"

    @admin.action(description="Pause the selected jobs (after their current batch)", permissions=["operate"])
    def pause(self, request, queryset):
        changed = sum(replay_job_pause(job, by=request.user.get_username()) for job in queryset)
        self.message_user(request, f"paused {changed} job(s)")

    @admin.action(description="Resume the selected jobs", permissions=["operate"])
    def resume(self, request, queryset):
        changed = sum(replay_job_resume(job, by=request.user.get_username()) for job in queryset)
        self.message_user(request, f"resumed {changed} job(s)")

    @admin.action(description="Stop the selected jobs for good", permissions=["operate"])
    def stop(self, request, queryset):
        changed = sum(replay_job_stop(job, by=request.user.get_username()) for job in queryset)
        self.message_user(request, f"stopped {changed} job(s)")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    """Which delivery loops are alive: a row per (worker process, loop), with its last beat."""

    list_display = ["worker", "loop", "started_at", "beat_at", "silent_for"]
    list_filter = ["worker", "loop"]
    ordering = ["-beat_at"]

    @admin.display(description="silent for", ordering="beat_at")
    def silent_for(self, row: WorkerHeartbeat) -> str:
        return f"{(timezone.now() - row.beat_at).total_seconds():.0f} s"
