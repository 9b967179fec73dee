"""What a manager sees of colleagues, on every page.

The rule: a manager sees and acts on their own leads and what hangs off them, their own
profile, mailbox limit and agent state; of a colleague only the display name, where a lead or
a call says whose it is; every user choice they are offered is themselves. Supervisors see and
act on everything. A row a manager may not see answers 404, as one that does not exist; an
action they may not take answers 403.

alice and bob are managers, olga a supervisor, root a superuser. `world` holds one of
everything of bob's and of the company's. Every URL the project serves (the admin's, read from
admin.site.get_urls(), and every other urlpattern) has a case (admin_cases(), other_cases())
saying what alice's request for bob's (or the company's) thing answers, and who gets through
with the very same request, so that the refusal is about whose it is. A URL added later without
a case fails, named.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from crm import services as crm_services
from crm.models import Activity, Lead, LeadStatus, Notification, Profile, Task
from nurture.models import CalendarDay, Enrollment, MailboxLimit, OutboundMessage, Sequence
from telephony.calls.agents import set_away
from telephony.calls.services import apply_event
from telephony.mail.esp_webhooks import KNOWN_ESPS
from telephony.models import AgentState, Call, CallEvent, InboundEmail, RejectedPayload
from tests.telephony.conftest import call_event

pytestmark = [
    # Anymail warns about the ESPs it no longer supports (their webhooks are still routed).
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning"),
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailDeprecationWarning"),
]

BOBS_EXTENSION = "4321"
WEBHOOK_SECRET = "pbx-s3cret"
ANYMAIL_KEYS = [
    "BREVO_API_KEY",
    "MAILERSEND_INBOUND_SECRET",
    "MAILERSEND_SIGNING_SECRET",
    "MAILGUN_WEBHOOK_SIGNING_KEY",
    "MAILTRAP_API_TOKEN",
    "POSTAL_WEBHOOK_KEY",
    "SENDINBLUE_API_KEY",
    "RESEND_API_KEY",
    "UNISENDER_GO_API_KEY",
    "MANDRILL_WEBHOOK_KEY",
]


def suppression_model():
    """The suppression list's model, where the nurture app has one."""
    try:
        return apps.get_model("nurture", "Suppression")
    except LookupError:
        return None


# --- The world: bob's things and the company's ----------------------------------------------


@pytest.fixture
def world(settings, make_user, alice, bob, olga, make_lead, django_capture_on_commit_callbacks):
    settings.TELEPHONY_AMI_HOST = ""
    settings.TELEPHONY_CLICK_TO_CALL_URL = ""
    settings.TELEPHONY_WEBHOOK_SECRETS = [WEBHOOK_SECRET]
    settings.ANYMAIL = {"WEBHOOK_SECRET": ["esp:s3cret"], **dict.fromkeys(ANYMAIL_KEYS, "key")}
    settings.ANYMAIL_WEBHOOK_ESPS = KNOWN_ESPS
    Profile.objects.filter(user=bob).update(extension=BOBS_EXTENSION)
    root = make_user("root", is_superuser=True)
    now = timezone.now()

    alices_lead = make_lead(
        alice, title="Alices shop", first_name="Anna", email="anna@client.example"
    )
    bobs_lead = make_lead(
        bob,
        title="Bobs bakery",
        first_name="Boris",
        last_name="Bakerov",
        company="Bakery Ltd",
        email="boris@client.example",
        phone_raw="+7 916 222-22-22",
    )
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(bobs_lead, "nurturing", by=bob)
    with django_capture_on_commit_callbacks(execute=True):
        bobs_call = apply_event(
            "pbx",
            call_event(
                "call.ringing",
                call_id="bobs",
                from_number="+79162222222",
                extension=BOBS_EXTENSION,
                at=now,
            ),
        )
        # bob's lead calls again, and it rings on alice's phone (201)
        call_alice_took = apply_event(
            "pbx",
            call_event("call.ringing", call_id="alice-took", from_number="+79162222222", at=now),
        )
    bobs_enrollment = bobs_lead.enrollments.get()
    bobs_message = OutboundMessage.objects.create(
        enrollment=bobs_enrollment,
        number=1,
        sender=bob,
        scheduled_for=now,
        to_email=bobs_lead.email,
        subject="Project “Bobs bakery”",
        body_text="Boris, hello!\n--\nBest regards,\nBob",
        state=OutboundMessage.State.SENT,
        sent_at=now,
        created_at=now,
    )
    bobs_note = crm_services.record_activity(
        bobs_lead, Activity.Kind.NOTE, "Boris wants a discount", actor=bob
    )
    bobs_notification = crm_services.notify(bob, "Boris called", lead=bobs_lead)
    bobs_task = crm_services.create_task(bobs_lead, "Call Boris back", now, bob, by=bob)
    set_away(bob, True)
    suppression = suppression_model()
    return SimpleNamespace(
        **login_records(),
        alice=alice,
        bob=bob,
        olga=olga,
        root=root,
        alices_lead=alices_lead,
        bobs_lead=bobs_lead,
        bobs_note=bobs_note,
        bobs_notification=bobs_notification,
        bobs_task=bobs_task,
        bobs_profile=bob.profile,
        bobs_enrollment=bobs_enrollment,
        bobs_message=bobs_message,
        bobs_mailbox_limit=MailboxLimit.objects.create(user=bob, per_minute=3, per_day=30),
        bobs_agent_state=AgentState.objects.get(user=bob),
        bobs_call=bobs_call,
        call_alice_took=call_alice_took,
        bobs_call_event=bobs_call.events.get(),
        bobs_letter=InboundEmail.objects.create(
            message_id="<re-1@client.example>",
            source="imap",
            kind=InboundEmail.Kind.REPLY,
            from_email=bobs_lead.email,
            subject="Re: Bobs bakery",
            text="Boris here",
            lead=bobs_lead,
            matched_by=InboundEmail.MatchedBy.SENDER,
        ),
        unmatched_letter=InboundEmail.objects.create(
            message_id="<who-1@else.example>",
            source="imap",
            kind=InboundEmail.Kind.REPLY,
            from_email="stranger@else.example",
            subject="Hello?",
        ),
        bobs_suppression=(
            suppression.objects.create(address=bobs_lead.email, reason="unsubscribe")
            if suppression
            else None
        ),
        rejected=RejectedPayload.objects.create(source="webhook", error="type: unknown"),
        status=LeadStatus.objects.get(code=LeadStatus.NEW),
        sequence=Sequence.objects.get(name="Дожимаем лида / Lead nurturing"),
        calendar_day=CalendarDay.objects.create(
            date=now.date(), kind=CalendarDay.Kind.DAY_OFF, note="Company party"
        ),
        managers=Group.objects.get(name="Managers"),
        periodictask=PeriodicTask.objects.get(name="Nurturing: dispatch due emails"),
        intervalschedule=IntervalSchedule.objects.first(),
        crontabschedule=CrontabSchedule.objects.create(minute="0", hour="9"),
        solarschedule=SolarSchedule.objects.create(
            event="sunrise", latitude="55.75", longitude="37.62"
        ),
        clockedschedule=ClockedSchedule.objects.create(clocked_time=now),
    )


def login_records() -> dict:
    """One of each record of the login lockout (django-axes), where it is installed."""
    if not apps.is_installed("axes"):
        return {}
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    seen = {
        "username": "bob",
        "ip_address": "192.0.2.7",
        "user_agent": "Firefox",
        "http_accept": "*/*",
        "path_info": "/admin/login/",
    }
    return {
        "accessattempt": AccessAttempt.objects.create(
            **seen, get_data="", post_data="", failures_since_start=1
        ),
        "accesslog": AccessLog.objects.create(**seen),
        "accessfailurelog": AccessFailureLog.objects.create(**seen),
    }


@pytest.fixture
def clients(world):
    """A logged-in client for each person."""
    logged_in = {}
    for name in ("alice", "bob", "olga", "root"):
        logged_in[name] = Client()
        logged_in[name].force_login(getattr(world, name))
    return logged_in


WATCHED = [
    Lead,
    Activity,
    Notification,
    Task,
    Profile,
    Enrollment,
    OutboundMessage,
    MailboxLimit,
    AgentState,
    Call,
    CallEvent,
    InboundEmail,
    RejectedPayload,
    LeadStatus,
    Sequence,
    CalendarDay,
    PeriodicTask,
]


def snapshot() -> dict:
    """Every row of what a request here could change."""
    models = [*WATCHED, suppression_model()] if suppression_model() else WATCHED
    return {model._meta.label: list(model.objects.order_by("pk").values_list()) for model in models}


# --- What a case says -----------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """alice's request answers one of `statuses` and changes nothing, while `passes` gets
    through with the very same request (None: nobody does, and `why` says why)."""

    url: Callable
    method: str = "get"
    data: Callable | None = None
    json: bool = False  # the data sent as JSON, as a webhook gets it
    headers: dict | None = None
    statuses: tuple = (403, 404)
    passes: str | None = None
    why: str = ""
    follow: bool = False


@dataclass(frozen=True)
class NotShown:
    """alice's page answers 200 without `marker`; `shown_to`'s page has it."""

    url: Callable
    marker: Callable
    shown_to: str = "olga"


@dataclass(frozen=True)
class Nobodys:
    """Nothing of any one person's is behind this URL (`why`); alice's GET of `url` works."""

    why: str
    url: Callable | None = None


def admin_url(name, *objects):
    """The admin URL `name` for the world's `objects` (attribute names)."""

    def url(world):
        return reverse(f"admin:{name}", args=[getattr(world, each).pk for each in objects])

    return url


def change_url_of(attribute, name):
    return admin_url(f"{name}_change", attribute)


def lead_form(world):
    return {
        "title": "Stolen",
        "status": world.status.pk,
        "responsible": world.bob.pk,  # alice may only make herself responsible
        "email": "new@client.example",
        "activities-TOTAL_FORMS": "0",
        "activities-INITIAL_FORMS": "0",
    }


# A manager's own things: what alice asks for is bob's. Model, the world's object, and who gets
# through adding one and deleting it (or why nobody does; adding None: see ADD_ATTEMPTS).
THEIRS = {
    "crm/lead": ("bobs_lead", None, "olga"),  # adding: ADD_ATTEMPTS
    "crm/activity": ("bobs_note", None, "olga"),
    "crm/notification": (
        "bobs_notification",
        "notifications are written by the CRM only",
        "olga",
    ),
    "crm/profile": ("bobs_profile", "olga", "olga"),
    "nurture/enrollment": (
        "bobs_enrollment",
        "a status change enrolls a lead",
        "an enrollment is halted, never deleted",
    ),
    "nurture/outboundmessage": (
        "bobs_message",
        "the dispatcher writes the outbox",
        "the outbox is the record of what was sent",
    ),
    "nurture/mailboxlimit": ("bobs_mailbox_limit", "olga", "olga"),
    "telephony/agentstate": (
        "bobs_agent_state",
        "a manager's row comes with their first call or away switch",
        "it is the manager's state",
    ),
    "telephony/call": ("bobs_call", "calls come from the PBX", "a call is the PBX's record"),
    "telephony/callevent": (
        "bobs_call_event",
        "events come from the PBX",
        "events are kept for audit",
    ),
    "telephony/inboundemail": ("bobs_letter", "mail arrives by itself", "olga"),
}
if suppression_model() is not None:
    THEIRS["nurture/suppression"] = (
        "bobs_suppression",
        "unsubscribes, bounces and complaints suppress an address",
        "a suppression is lifted, never deleted",
    )

# The company's configuration: every manager reads it, only supervisors change it.
SHARED = {
    "crm/leadstatus": "status",
    "nurture/sequence": "sequence",
    "nurture/calendarday": "calendar_day",
}

# What a manager may not read at all: model, the world's object, who may read it, add and
# delete it (or why nobody may).
RECORDED_BY_THE_LOCKOUT = "the login lockout records them"
NOT_FOR_MANAGERS = {
    "telephony/rejectedpayload": (
        "rejected",
        "olga",
        "the webhooks keep them, for inspection",
        "they are kept for inspection",
    ),
    "auth/user": ("bob", "root", "root", "root"),
    "auth/group": ("managers", "root", "root", "root"),
    "django_celery_beat/periodictask": ("periodictask", "root", "root", "root"),
    "django_celery_beat/intervalschedule": ("intervalschedule", "root", "root", "root"),
    "django_celery_beat/crontabschedule": ("crontabschedule", "root", "root", "root"),
    "django_celery_beat/solarschedule": ("solarschedule", "root", "root", "root"),
    "django_celery_beat/clockedschedule": ("clockedschedule", "root", "root", "root"),
    "axes/accessattempt": ("accessattempt", "root", RECORDED_BY_THE_LOCKOUT, "root"),
    "axes/accesslog": ("accesslog", "root", RECORDED_BY_THE_LOCKOUT, "root"),
    "axes/accessfailurelog": ("accessfailurelog", "root", RECORDED_BY_THE_LOCKOUT, "root"),
}


def refused_or_nobody(url, who, **options):
    """Refused, with `who` passing, or nobody passing when `who` is a reason."""
    if who in ("bob", "olga", "root"):
        return Refused(url, passes=who, **options)
    return Refused(url, why=who, **options)


def model_cases(path: str) -> dict:
    """The cases of a model admin's own URLs (list, add, history, delete, change, and the
    bare object URL that redirects to change)."""
    name = path.replace("/", "_")
    if path in THEIRS:
        attribute, adds, deletes = THEIRS[path]
        add = ADD_ATTEMPTS.get(path) or refused_or_nobody(
            admin_url(f"{name}_add"), adds, statuses=(403,)
        )
        return {
            f"{name}_changelist": NotShown(
                admin_url(f"{name}_changelist"), change_url_of(attribute, name)
            ),
            f"{name}_add": add,
            f"{name}_history": Refused(
                admin_url(f"{name}_history", attribute), statuses=(404,), passes="bob"
            ),
            f"{name}_delete": refused_or_nobody(
                admin_url(f"{name}_delete", attribute), deletes, statuses=(403,)
            ),
            f"{name}_change": Refused(
                change_url_of(attribute, name), statuses=(404,), passes="bob"
            ),
            f"{path}/<path:object_id>/": Refused(
                bare_url(path, attribute), statuses=(404,), passes="bob", follow=True
            ),
        }
    if path in SHARED:
        attribute = SHARED[path]
        shared = "the company's configuration: every manager reads it"
        return {
            f"{name}_changelist": Nobodys(shared, admin_url(f"{name}_changelist")),
            f"{name}_add": Refused(admin_url(f"{name}_add"), statuses=(403,), passes="olga"),
            f"{name}_history": Nobodys(shared, admin_url(f"{name}_history", attribute)),
            f"{name}_delete": Refused(
                admin_url(f"{name}_delete", attribute), statuses=(403,), passes="olga"
            ),
            f"{name}_change": Refused(
                change_url_of(attribute, name),
                method="post",
                data=lambda world: {},
                statuses=(403,),
                passes="olga",
            ),
            f"{path}/<path:object_id>/": Nobodys(shared, bare_url(path, attribute)),
        }
    if path not in NOT_FOR_MANAGERS:
        return {}  # its URLs fail, named, for want of a case
    attribute, who, adds, deletes = NOT_FOR_MANAGERS[path]
    return {
        f"{name}_changelist": Refused(admin_url(f"{name}_changelist"), statuses=(403,), passes=who),
        f"{name}_add": refused_or_nobody(admin_url(f"{name}_add"), adds, statuses=(403,)),
        f"{name}_history": Refused(
            admin_url(f"{name}_history", attribute), statuses=(403,), passes=who
        ),
        f"{name}_delete": refused_or_nobody(
            admin_url(f"{name}_delete", attribute), deletes, statuses=(403,)
        ),
        f"{name}_change": Refused(change_url_of(attribute, name), statuses=(403,), passes=who),
        f"{path}/<path:object_id>/": Refused(
            bare_url(path, attribute), statuses=(403,), passes=who, follow=True
        ),
    }


def bare_url(path, attribute):
    return lambda world: f"/admin/{path}/{getattr(world, attribute).pk}/"


ADD_ATTEMPTS = {
    # alice puts bob's name on a new lead, or a note on bob's lead: neither is offered to her.
    "crm/lead": Refused(
        admin_url("crm_lead_add"), method="post", data=lead_form, statuses=(404,), passes="bob"
    ),
    "crm/activity": Refused(
        admin_url("crm_activity_add"),
        method="post",
        data=lambda world: {"lead": world.bobs_lead.pk, "summary": "by maria"},
        statuses=(404,),
        passes="bob",
    ),
}


def autocomplete(source, field_name, term=""):
    """The admin's autocomplete for `source`'s (app label, model name) field `field_name`."""

    def url(world):
        app_label, model_name = source
        query = f"app_label={app_label}&model_name={model_name}&field_name={field_name}"
        return f"{reverse('admin:autocomplete')}?{query}&term={term}"

    return url


ADMIN_SITE_CASES = {
    "index": Nobodys("lists what the reader may open", admin_url("index")),
    "login": Nobodys("the login form", admin_url("login")),
    "logout": Nobodys("ends the reader's own session (POST only)"),
    "password_change": Nobodys("the reader's own password", admin_url("password_change")),
    "password_change_done": Nobodys("the reader's own password", admin_url("password_change_done")),
    "jsi18n": Nobodys("the admin's translations", admin_url("jsi18n")),
    "autocomplete": [
        # A lead autocomplete (the preview's, the note's) offers only the reader's leads...
        NotShown(
            autocomplete(("nurture", "enrollment"), "lead", term="bakery"),
            lambda world: f'"id": "{world.bobs_lead.pk}"',
        ),
        # ...and no user is ever found by one: the user choices offer oneself only.
        Refused(autocomplete(("crm", "lead"), "responsible"), statuses=(403,), passes="root"),
    ],
    "view_on_site": Refused(
        lambda world: reverse(
            "admin:view_on_site",
            args=[ContentType.objects.get_for_model(Lead).pk, world.bobs_lead.pk],
        ),
        statuses=(404,),
        why="no model of the CRM has a page outside the admin: 404 for everybody",
    ),
    "app_list": Refused(lambda world: "/admin/auth/", statuses=(404,), passes="root"),
    "(?P<url>.*)$": Refused(  # the catch-all: a URL without its slash, redirected
        lambda world: f"/admin/crm/lead/{world.bobs_lead.pk}/change",
        statuses=(404,),
        passes="bob",
        follow=True,
    ),
    "auth_user_password_change": Refused(
        admin_url("auth_user_password_change", "bob"), statuses=(403,), passes="root"
    ),
    "nurture_sequence_preview": Refused(
        lambda world: (
            reverse("admin:nurture_sequence_preview", args=[world.sequence.pk])
            + f"?lead={world.bobs_lead.pk}"
        ),
        statuses=(404,),
        passes="bob",
    ),
    "telephony_call_report": Refused(
        lambda world: reverse("admin:telephony_call_report") + f"?manager={world.bob.pk}",
        statuses=(404,),
        passes="bob",
    ),
    "telephony_inboundemail_attach": [
        Refused(
            admin_url("telephony_inboundemail_attach", "bobs_letter"), statuses=(404,), passes="bob"
        ),
        # alice claims a letter nobody's lead wrote... for bob's lead.
        Refused(
            admin_url("telephony_inboundemail_attach", "unmatched_letter"),
            method="post",
            data=lambda world: {"lead": world.bobs_lead.pk, "apply": "1"},
            statuses=(404,),
            passes="bob",
        ),
    ],
}
if suppression_model() is not None:
    ADMIN_SITE_CASES["nurture_suppression_lift"] = Refused(
        admin_url("nurture_suppression_lift", "bobs_suppression"), statuses=(404,), passes="olga"
    )


def webhook_of_the_esp(route):
    return Refused(
        lambda world: "/" + route.replace("^", "").replace("(_mime)?", "").replace("$", ""),
        method="post",
        data=lambda world: {},
        statuses=(401, 403),  # 403: Amazon SES, which needs boto3 (not installed)
        why="the ESP's credentials (ANYMAIL_WEBHOOK_SECRET) let a request in, not a session",
    )


def bobs(url_name, attribute="bobs_lead", method="get", data=None):
    """bob's thing at the workspace's `url_name`: alice gets a 404, bob gets through."""
    return Refused(
        lambda world: reverse(url_name, args=[getattr(world, attribute).pk]),
        method=method,
        data=data,
        statuses=(404,),
        passes="bob",
    )


def bobs_lead_title(world):
    return world.bobs_lead.title


def bobs_lead_name(world):
    return world.bobs_lead.display_name


SENT_ONE = 'data-label="Sent">1<'  # the nurturing page's count of who got an email


WORKSPACE_CASES = {
    "": NotShown(lambda world: reverse("crm:today"), lambda world: "Boris called", "bob"),
    "leads/": NotShown(lambda world: reverse("crm:lead_list"), bobs_lead_title, "bob"),
    "leads/new/": Nobodys("a new lead is the reader's own", lambda world: reverse("crm:lead_new")),
    "leads/<int:lead_id>/": bobs("crm:lead_detail"),
    "leads/<int:lead_id>/edit/": bobs("crm:lead_edit"),
    "leads/<int:lead_id>/status/": bobs(
        "crm:lead_status", method="post", data=lambda world: {"status": "junk"}
    ),
    "leads/<int:lead_id>/notes/": bobs(
        "crm:lead_note", method="post", data=lambda world: {"text": "Mine now"}
    ),
    "pipeline/": NotShown(lambda world: reverse("crm:pipeline"), bobs_lead_title, "bob"),
    "pipeline/<slug:code>/": NotShown(
        lambda world: reverse(
            "crm:pipeline_column", args=[Lead.objects.get(pk=world.bobs_lead.pk).status.code]
        ),
        bobs_lead_title,
        "bob",
    ),
    "pipeline/move/<int:lead_id>/": bobs(
        "crm:pipeline_move", method="post", data=lambda world: {"status": "junk"}
    ),
    "notifications/": NotShown(
        lambda world: reverse("crm:notification_list"), lambda world: "Boris called", "bob"
    ),
    "notifications/<int:notification_id>/": bobs(
        "crm:notification_open", attribute="bobs_notification"
    ),
    "notifications/read/": Nobodys("marks the reader's own notifications read (POST only)"),
    "nurturing/": [  # bob's lead called: its nurturing is finished
        NotShown(
            lambda world: reverse("nurturing:overview") + "?state=finished",
            bobs_lead_title,
            "bob",
        ),
        # a manager's filter by a colleague is not offered, and asking for it shows her own
        NotShown(
            lambda world: reverse("nurturing:overview") + f"?state=finished&manager={world.bob.pk}",
            bobs_lead_title,
        ),
    ],
    "nurturing/emails/": [  # bob's lead got email 1: only his and olga's numbers count it
        NotShown(lambda world: reverse("nurturing:emails"), lambda world: SENT_ONE, "bob"),
        NotShown(
            lambda world: reverse("nurturing:emails") + f"?manager={world.bob.pk}",
            lambda world: SENT_ONE,
        ),
    ],
    "leads/<int:lead_id>/tasks/": bobs(
        "crm:lead_task", method="post", data=lambda world: {"title": "Mine", "when": "tomorrow"}
    ),
    "tasks/<int:task_id>/done/": bobs("crm:task_done", attribute="bobs_task", method="post"),
    "accounts/language/": Nobodys("sets the reader's own language (POST only)"),
    "accounts/settings/": NotShown(  # one's own profile: bob's signature is on bob's page only
        lambda world: reverse("my_settings"), lambda world: "Best regards,\nBob", "bob"
    ),
    "healthz": Nobodys("says whether the installation can send; nothing of anyone's"),
    "dev/mail/": Nobodys("development only (DEBUG on, staff): the emails not sent"),
    "dev/mail/<str:name>/": Nobodys("development only (DEBUG on, staff): one email not sent"),
    "nurture/enrollments/<int:enrollment_id>/stop/": bobs(
        "nurture:stop", attribute="bobs_enrollment", method="post"
    ),
    "nurture/enrollments/<int:enrollment_id>/restart/": bobs(
        "nurture:restart", attribute="bobs_enrollment", method="post"
    ),
    # The calls page: bob's lead is never named in alice's log or CSV (she took one of its
    # calls: it reads "a lead of Bob Manager"), nor bob in her report; she filters by herself.
    "calls/": [
        NotShown(lambda world: reverse("calls:log"), bobs_lead_name, "bob"),
        Refused(lambda world: reverse("calls:log") + f"?manager={world.bob.pk}", passes="bob"),
    ],
    "calls/export.csv": [
        NotShown(lambda world: reverse("calls:export"), bobs_lead_name, "bob"),
        Refused(lambda world: reverse("calls:export") + f"?manager={world.bob.pk}", passes="bob"),
    ],
    "calls/report/": [
        NotShown(lambda world: reverse("calls:report"), lambda world: ">Bob Manager</td>"),
        Refused(lambda world: reverse("calls:report") + f"?manager={world.bob.pk}", passes="bob"),
    ],
    "accounts/login/": Nobodys("the sign-in form", lambda world: reverse("login")),
    "accounts/logout/": Nobodys("ends the reader's own session (POST only)"),
    "accounts/password/": Nobodys(
        "the reader's own password", lambda world: reverse("password_change")
    ),
    "accounts/password/done/": Nobodys("the reader's own password"),
    "accounts/password/reset/": Nobodys("asks for a link to the address's own account"),
    "accounts/password/reset/sent/": Nobodys("says a link was sent"),
    "accounts/password/reset/<uidb64>/<token>/": Nobodys("a token mailed to the account opens it"),
    "accounts/password/reset/complete/": Nobodys("says the password was set"),
}
WORKSPACE_CASES["leads/bulk/"] = Refused(  # several leads at once: one of bob's is enough
    lambda world: reverse("crm:lead_bulk"),
    method="post",
    data=lambda world: {"leads": [world.bobs_lead.pk], "status": "junk"},
    statuses=(404,),
    passes="bob",
)

OTHER_CASES = {
    **WORKSPACE_CASES,
    "nurture/unsubscribe/<str:token>/": Refused(
        lambda world: reverse("nurture:unsubscribe", args=[f"{world.bobs_message.pk}:forged"]),
        statuses=(404,),
        why="a token the CRM signed opens it, for the lead, not a session",
    ),
    "telephony/events/": Refused(
        lambda world: reverse("telephony:events"),
        method="post",
        data=lambda world: {"event_id": "e-1", "type": "call.ended", "call_id": "bobs"},
        json=True,
        headers={"X-Timestamp": "1764000000", "X-Signature": "sha256=" + "0" * 64},
        statuses=(403,),
        why="the PBX's signature lets an event in, not a session",
    ),
    "telephony/screen-pop/": NotShown(
        lambda world: reverse("telephony:screen_pop"),
        lambda world: world.bobs_lead.title,
        shown_to="bob",
    ),
    "telephony/agent/": NotShown(
        lambda world: reverse("telephony:agent_state"),
        lambda world: '"away": true',  # bob is away; this is only ever one's own state
        shown_to="bob",
    ),
    "telephony/leads/<int:lead_id>/call/": Refused(
        lambda world: reverse("telephony:click_to_call", args=[world.bobs_lead.pk]),
        method="post",
        statuses=(404,),
        passes="bob",
    ),
    "telephony/calls/<int:call_pk>/hangup/": Refused(
        lambda world: reverse("telephony:hangup", args=[world.bobs_call.pk]),
        method="post",
        statuses=(404,),
        passes="bob",
    ),
    "telephony/calls/<int:call_pk>/transfer/": Refused(
        lambda world: reverse("telephony:transfer", args=[world.bobs_call.pk]),
        method="post",
        data=lambda world: {"to": "203"},
        statuses=(404,),
        passes="bob",
    ),
    "telephony/calls/<int:call_pk>/attended-transfer/": Refused(
        lambda world: reverse("telephony:attended_transfer", args=[world.bobs_call.pk]),
        method="post",
        data=lambda world: {"to": "203"},
        statuses=(404,),
        passes="bob",
    ),
    "telephony/calls/<int:call_pk>/hold/": Refused(
        lambda world: reverse("telephony:hold", args=[world.bobs_call.pk]),
        method="post",
        statuses=(404,),
        passes="bob",
    ),
    "telephony/calls/<int:call_pk>/resume/": Refused(
        lambda world: reverse("telephony:resume", args=[world.bobs_call.pk]),
        method="post",
        statuses=(404,),
        passes="bob",
    ),
    "telephony/calls/<int:call_pk>/conference/": Refused(
        lambda world: reverse("telephony:conference", args=[world.bobs_call.pk]),
        method="post",
        data=lambda world: {"to": "203"},
        statuses=(404,),
        passes="bob",
    ),
}


# --- Every URL, and its case ----------------------------------------------------------------


def _routes(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield pattern, prefix + str(pattern.pattern)


def admin_keys() -> list[str]:
    """Every URL of the admin: by name, or by its route where it has none."""
    return [pattern.name or route for pattern, route in _routes(admin.site.get_urls())]


def other_keys() -> list[str]:
    """Every URL outside the admin, by its route."""
    outside = [
        resolver
        for resolver in get_resolver().url_patterns
        if not (isinstance(resolver, URLResolver) and resolver.app_name == "admin")
    ]
    return [route for _, route in _routes(outside)]


def admin_cases() -> dict:
    cases = dict(ADMIN_SITE_CASES)
    for model in admin.site._registry:
        cases.update(model_cases(f"{model._meta.app_label}/{model._meta.model_name}"))
    return cases


def other_cases() -> dict:
    cases = dict(OTHER_CASES)
    for route in other_keys():
        if route.startswith("anymail/"):
            cases[route] = webhook_of_the_esp(route)
    return cases


def send(client, case, world):
    url = case.url(world)
    data = case.data(world) if case.data else {}
    headers = case.headers or {}
    if case.method == "post":
        if case.json:
            return client.post(
                url, json.dumps(data), content_type="application/json", headers=headers
            )
        return client.post(url, data, follow=case.follow, headers=headers)
    return client.get(url, data, follow=case.follow, headers=headers)


def check(case, world, clients):
    if isinstance(case, Nobodys):
        assert case.why
        if case.url is not None:
            assert clients["alice"].get(case.url(world)).status_code in (200, 302)
    elif isinstance(case, NotShown):
        page = clients["alice"].get(case.url(world))
        assert page.status_code == 200
        assert case.marker(world) not in page.content.decode()
        shown = clients[case.shown_to].get(case.url(world))
        assert case.marker(world) in shown.content.decode(), "the marker is never there"
    else:
        before = snapshot()
        answer = send(clients["alice"], case, world)
        assert answer.status_code in case.statuses
        assert snapshot() == before, "alice's refused request changed something"
        if case.passes is None:
            assert case.why, "nobody passes: say why"
        else:
            control = send(clients[case.passes], case, world)
            assert control.status_code not in (403, 404), f"{case.passes} is refused too"


@pytest.mark.parametrize("key", admin_keys())
def test_every_admin_url_refuses_a_manager_what_is_not_hers(key, world, clients):
    cases = admin_cases()
    assert key in cases, f"admin URL {key!r} has no case in tests/security/test_isolation.py"
    for case in cases[key] if isinstance(cases[key], list) else [cases[key]]:
        check(case, world, clients)


@pytest.mark.parametrize("key", other_keys())
def test_every_other_url_refuses_a_manager_what_is_not_hers(key, world, clients):
    cases = other_cases()
    assert key in cases, f"URL {key!r} has no case in tests/security/test_isolation.py"
    for case in cases[key] if isinstance(cases[key], list) else [cases[key]]:
        check(case, world, clients)


def test_no_case_is_left_over_from_a_url_that_is_gone(db):
    admin_left = set(admin_cases()) - set(admin_keys())
    other_left = set(other_cases()) - set(other_keys())

    assert not admin_left and not other_left


# --- The attacks, one by one --------------------------------------------------------


def change_page(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def html_of(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


def test_a_note_is_written_in_its_writers_name_now_whatever_the_form_says(world, clients):
    before = timezone.now()

    response = clients["alice"].post(
        reverse("admin:crm_activity_add"),
        {
            "lead": world.alices_lead.pk,
            "summary": "Called back",
            "kind": "status_change",
            "actor": world.bob.pk,
            "payload": '{"from": "new", "to": "junk"}',
            "created_at": "2020-01-01 10:00",
        },
    )

    assert response.status_code == 302
    note = world.alices_lead.activities.get(summary="Called back")
    assert (note.kind, note.actor, note.payload) == (Activity.Kind.NOTE, world.alice, {})
    assert note.created_at >= before


def test_the_note_form_names_no_lead_but_the_managers_own(world, clients):
    url = reverse("admin:crm_activity_add")

    theirs = html_of(clients["alice"], url, lead=world.bobs_lead.pk)
    own = html_of(clients["alice"], url, lead=world.alices_lead.pk)

    assert "Bobs bakery" not in theirs and "Boris" not in theirs
    assert "Alices shop" in own


def test_timeline_entries_are_never_edited_not_even_by_a_supervisor(world, clients):
    url = change_page(world.bobs_note)

    for name in ("bob", "olga"):
        assert clients[name].post(url, {"summary": "rewritten"}).status_code == 403

    world.bobs_note.refresh_from_db()
    assert world.bobs_note.summary == "Boris wants a discount"


def test_a_manager_changes_nothing_of_her_notification_but_whether_it_is_read(world, clients):
    own = crm_services.notify(world.alice, "Email 1 of 6 sent to Anna", lead=world.alices_lead)

    response = clients["alice"].post(
        change_page(own),
        {
            "user": world.bob.pk,
            "message": "From the system: call Maria",
            "lead": world.bobs_lead.pk,
            "is_read": "on",
        },
    )

    assert response.status_code == 302
    own.refresh_from_db()
    assert (own.user, own.message, own.lead, own.is_read) == (
        world.alice,
        "Email 1 of 6 sent to Anna",
        world.alices_lead,
        True,
    )


def test_nobody_writes_a_notification_by_hand(world, clients):
    url = reverse("admin:crm_notification_add")

    assert clients["alice"].get(url).status_code == 403
    assert clients["olga"].post(url, {"user": world.bob.pk, "message": "Hi"}).status_code == 403
    assert Notification.objects.filter(message="Hi").count() == 0


def test_a_supervisor_reads_every_notification_but_marks_only_her_own(world, clients):
    olgas = crm_services.notify(world.olga, "Weekly report is ready")
    alices = crm_services.notify(world.alice, "Anna called")

    page = clients["olga"].post(
        reverse("admin:crm_notification_changelist"),
        {
            "action": "mark_read",
            "_selected_action": [olgas.pk, alices.pk, world.bobs_notification.pk],
        },
        follow=True,
    )
    bobs = clients["olga"].post(change_page(world.bobs_notification), {"is_read": "on"})

    html = page.content.decode()
    assert "1 notification marked as read." in html
    assert "2 notifications of somebody else were left as they were" in html
    assert clients["olga"].get(change_page(world.bobs_notification)).status_code == 200
    assert bobs.status_code == 403
    read = dict(Notification.objects.values_list("pk", "is_read"))
    assert (read[olgas.pk], read[alices.pk], read[world.bobs_notification.pk]) == (
        True,
        False,
        False,
    )


def test_a_call_taken_on_a_colleagues_lead_says_whose_lead_it_is_and_nothing_more(world, clients):
    call = world.call_alice_took
    page = html_of(clients["alice"], change_page(call))
    listed = html_of(clients["alice"], reverse("admin:telephony_call_changelist"))
    events = html_of(clients["alice"], reverse("admin:telephony_callevent_changelist"))

    for html in (page, listed):
        assert "a lead of Bob Manager" in html
        for detail in ("Boris", "Bakerov", "Bobs bakery", "Bakery Ltd"):
            assert detail not in html
    assert "call.ringing" not in page and "alice-took" not in events  # the PBX's raw events
    assert reverse("admin:crm_lead_change", args=[world.bobs_lead.pk]) not in page
    olgas = html_of(clients["olga"], change_page(call))
    assert "Bobs bakery" in olgas and "call.ringing" in olgas


def test_a_call_several_leads_may_be_from_names_only_the_managers_own(
    world, clients, make_lead, django_capture_on_commit_callbacks
):
    make_lead(world.alice, title="Flower shop", email="f@x.example", phone_raw="+79163333333")
    make_lead(world.bob, title="Flower farm", email="g@x.example", phone_raw="+79163333333")
    with django_capture_on_commit_callbacks(execute=True):
        call = apply_event(
            "pbx",
            call_event(
                "call.ringing",
                call_id="shared",
                from_number="+79163333333",
                extension=BOBS_EXTENSION,
            ),
        )

    page = html_of(clients["alice"], change_page(call))

    assert "Flower shop" in page and "a lead of Bob Manager" in page
    assert "Flower farm" not in page


def test_a_call_a_manager_may_see_but_not_control_answers_403(
    world, clients, make_lead, django_capture_on_commit_callbacks
):
    make_lead(world.alice, title="Flower shop", email="f@x.example", phone_raw="+79163333333")
    make_lead(world.bob, title="Flower farm", email="g@x.example", phone_raw="+79163333333")
    with django_capture_on_commit_callbacks(execute=True):
        call = apply_event(
            "pbx",
            call_event(
                "call.ringing",
                call_id="shared",
                from_number="+79163333333",
                extension=BOBS_EXTENSION,
            ),
        )  # it rings on bob's phone; one of the leads it may be from is alice's
    json_answer = {"headers": {"accept": "application/json"}}

    hangup = clients["alice"].post(reverse("telephony:hangup", args=[call.pk]), **json_answer)
    transfer = clients["alice"].post(
        reverse("telephony:transfer", args=[call.pk]), {"to": "201"}, **json_answer
    )

    assert clients["alice"].get(change_page(call)).status_code == 200
    assert (hangup.status_code, hangup.json()["error"]) == (403, "You may not control this call.")
    assert transfer.status_code == 403


@pytest.fixture
def ami(settings):
    """A fake Asterisk manager interface on loopback, configured as the CRM's PBX."""
    from tests.telephony.fake_ami import as_the_pbx

    with as_the_pbx(settings) as server:
        yield server


def test_hanging_up_a_call_on_a_colleagues_lead_does_not_say_which_lead(world, ami, clients):
    call = world.call_alice_took
    ami.channels = [
        {"Channel": "PJSIP/201-00000020", "Uniqueid": call.call_id, "Linkedid": call.call_id}
    ]
    url = reverse("telephony:hangup", args=[call.pk])

    answer = clients["alice"].post(url, headers={"accept": "application/json"})
    back = clients["alice"].post(url)

    assert answer.status_code == 200
    assert answer.json()["call"]["lead"] is None
    assert back["Location"] == reverse("admin:index")  # not to bob's lead's page


def test_a_colleagues_extension_is_never_shown_only_his_name(
    world, clients, django_capture_on_commit_callbacks
):
    Lead.objects.filter(pk=world.alices_lead.pk).update(phone="+79161111111")
    with django_capture_on_commit_callbacks(execute=True):
        call = apply_event(
            "pbx",
            call_event(
                "call.answered",
                call_id="for-alice",
                from_number="+79161111111",
                extension=BOBS_EXTENSION,
            ),
        )  # alice's lead, answered by bob
    assert call.lead == world.alices_lead

    pages = [
        html_of(clients["alice"], change_page(call)),
        html_of(clients["alice"], reverse("admin:telephony_call_changelist")),
        html_of(clients["alice"], change_page(world.alices_lead)),
    ]

    for html in pages:
        assert "Bob Manager" in html
        assert BOBS_EXTENSION not in html
    assert BOBS_EXTENSION in html_of(clients["olga"], change_page(call))


def test_a_manager_keeps_her_own_profiles_signature_and_phone_and_sees_no_other(world, clients):
    profile = world.alice.profile

    listed = html_of(clients["alice"], reverse("admin:crm_profile_changelist"))
    response = clients["alice"].post(
        change_page(profile),
        {
            "signature": "Yours,\nAlice",
            "phone": "+7 495 111-22-33",
            "display_name": "Maria Manager",
            "extension": "4322",
            "user": world.bob.pk,
        },
    )

    assert "Alice Manager" in listed and "Bob Manager" not in listed
    assert response.status_code == 302
    profile.refresh_from_db()
    assert (profile.signature, profile.phone) == ("Yours,\nAlice", "+7 495 111-22-33")
    assert (profile.user, profile.display_name, profile.extension) == (
        world.alice,
        "Alice Manager",
        "201",
    )


def test_a_manager_sees_her_own_mailbox_limit_and_cannot_change_it(world, clients):
    own = MailboxLimit.objects.create(user=world.alice, per_minute=5, per_day=50)

    listed = html_of(clients["alice"], reverse("admin:nurture_mailboxlimit_changelist"))
    changed = clients["alice"].post(change_page(own), {"user": world.alice.pk, "per_minute": 99})

    assert change_page(own) in listed
    assert changed.status_code == 403
    own.refresh_from_db()
    assert own.per_minute == 5


def filter_choices(response, field_path) -> list[str]:
    [spec] = [
        spec
        for spec in response.context["cl"].filter_specs
        if getattr(spec, "field_path", None) == field_path
    ]
    return [label for _, label in spec.lookup_choices]


def test_every_user_choice_offers_a_manager_herself_only(
    world, clients, django_capture_on_commit_callbacks
):
    # Rows of alice's that name bob: her lead's email that bob sent while it was his, and a
    # call on her lead that bob took.
    with django_capture_on_commit_callbacks(execute=True):
        crm_services.change_status(world.alices_lead, "nurturing", by=world.alice)
    OutboundMessage.objects.create(
        enrollment=world.alices_lead.enrollments.get(),
        number=1,
        sender=world.bob,
        scheduled_for=timezone.now(),
        to_email=world.alices_lead.email,
        created_at=timezone.now(),
    )
    Lead.objects.filter(pk=world.alices_lead.pk).update(phone="+79161111111")
    with django_capture_on_commit_callbacks(execute=True):
        apply_event(
            "pbx",
            call_event(
                "call.ringing", call_id="b", from_number="+79161111111", extension=BOBS_EXTENSION
            ),
        )
    alice = clients["alice"]
    herself = ["Alice Manager"]

    leads = alice.get(reverse("admin:crm_lead_changelist"))
    outbox = alice.get(reverse("admin:nurture_outboundmessage_changelist"))
    calls = alice.get(reverse("admin:telephony_call_changelist"))
    lead_form = alice.get(reverse("admin:crm_lead_add")).context["adminform"].form
    report = alice.get(reverse("admin:telephony_call_report")).context["form"]

    assert filter_choices(leads, "responsible") == herself
    assert filter_choices(outbox, "sender") == herself
    assert filter_choices(calls, "agent") == herself
    assert list(lead_form.fields["responsible"].queryset) == [world.alice]
    assert list(report.fields["manager"].queryset) == [world.alice]
    olgas_outbox = clients["olga"].get(reverse("admin:nurture_outboundmessage_changelist"))
    assert "Bob Manager" in filter_choices(olgas_outbox, "sender")


def test_the_history_of_a_lead_names_people_by_their_display_name(world, clients):
    from django.contrib.admin.models import CHANGE, LogEntry

    LogEntry.objects.create(
        user=world.olga,
        content_type=ContentType.objects.get_for_model(Lead),
        object_id=str(world.alices_lead.pk),
        object_repr=str(world.alices_lead),
        action_flag=CHANGE,
        change_message="[]",
    )

    html = html_of(clients["alice"], reverse("admin:crm_lead_history", args=[world.alices_lead.pk]))

    assert "<td>Olga Manager</td>" in html
    assert "olga (Olga)" not in html


def test_managers_may_edit_their_profile_and_read_their_mailbox_limit_and_no_more(db):
    managers = set(
        Group.objects.get(name="Managers").permissions.values_list(
            "content_type__app_label", "codename"
        )
    )

    assert {("crm", "change_profile"), ("nurture", "view_mailboxlimit")} <= managers
    assert (
        not {
            ("crm", "add_profile"),
            ("crm", "add_notification"),
            ("crm", "change_activity"),
            ("nurture", "change_mailboxlimit"),
        }
        & managers
    )
