"""Incoming mail: reading, classifying and matching real-looking messages, and what they do."""

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from crm.models import Activity, Lead, Notification
from nurture.models import OutboundMessage
from telephony.mail import letters
from telephony.mail.decoding import MAX_TEXT
from telephony.mail.services import attach_to_lead, receive_email
from telephony.models import InboundContact, InboundEmail

SAMPLES = Path(__file__).parent / "mail_samples"
# The Message-ID of our nurture email that the samples answer (or bounce).
OUR_MESSAGE_ID = "<176414040012.48213.9817263541238745623@crm.localhost>"


def sample(name: str) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes((SAMPLES / name).read_bytes())


def message(headers: dict, body: str = "Hello", subtype: str = "plain") -> EmailMessage:
    built = EmailMessage()
    for name, value in headers.items():
        built[name] = value
    built.set_content(body, subtype=subtype)
    return built


@pytest.fixture
def our_email(nurtured_lead, alice):
    """The first nurture email to Ivan, as sent, with the Message-ID the samples quote."""
    now = timezone.now()
    return OutboundMessage.objects.create(
        enrollment=nurtured_lead.enrollments.get(),
        number=1,
        state=OutboundMessage.State.SENT,
        sender=alice,
        scheduled_for=now,
        to_email=nurtured_lead.email,
        subject="Принято ли решение по проекту «Shop»?",
        message_id=OUR_MESSAGE_ID,
        sent_at=now,
        created_at=now,
    )


@pytest.fixture
def receive(django_capture_on_commit_callbacks):
    """Receive a message as a channel would (what runs after commit runs too)."""

    def run(message, source="test"):
        with django_capture_on_commit_callbacks(execute=True):
            return receive_email(message, source=source)

    return run


def state_of(lead):
    lead.refresh_from_db()
    enrollment = lead.enrollments.get()
    return lead.status.code, enrollment.state, enrollment.halt_reason


# --- Replies --------------------------------------------------------------------------------


def test_a_gmail_reply_to_our_email_is_matched_by_thread_and_stops_nurturing(
    our_email, nurtured_lead, alice, receive
):
    inbound = receive(sample("gmail_reply.eml"))

    assert (inbound.kind, inbound.lead, inbound.matched_by) == ("reply", nurtured_lead, "thread")
    assert inbound.outbound_message == our_email
    assert state_of(nurtured_lead) == ("in_progress", "halted", "reply")
    entry = nurtured_lead.activities.get(kind=Activity.Kind.EMAIL_IN)
    assert entry.payload["subject"] == "Re: Принято ли решение по проекту «Shop»?"
    assert entry.payload["excerpt"].startswith("Алиса, добрый день!")
    assert "Позвоните мне завтра" in entry.payload["excerpt"]
    assert "Best regards" not in entry.payload["excerpt"]  # the quoted email is left out
    assert Notification.objects.filter(user=alice, message__contains="wrote back").count() == 1


def test_the_reply_is_stored_decoded_with_its_plain_text(our_email, receive):
    inbound = receive(sample("gmail_reply.eml"))

    assert inbound.message_id == (
        "<CAJ3x+5rZq7Vd0mT9Qe8yW1pLk2s4Xg6NfB0uH7cR5aE3iO9jKw@mail.gmail.com>"
    )
    assert (inbound.from_name, inbound.from_email) == ("Иван Петров", "ivan@client.example")
    assert inbound.subject == "Re: Принято ли решение по проекту «Shop»?"
    assert inbound.in_reply_to == OUR_MESSAGE_ID
    assert inbound.text.startswith("Алиса, добрый день!")
    assert "> Принято ли решение" in inbound.text
    assert inbound.sent_at.isoformat() == "2025-11-26T11:40:55+03:00"
    assert inbound.source == "test"
    assert len(inbound.headers["Received"]) == 2


def test_a_reply_without_in_reply_to_is_matched_by_the_senders_address_in_any_case(
    nurtured_lead, receive
):
    inbound = receive(sample("reply_without_in_reply_to.eml"))  # From: IVAN@Client.Example

    assert (inbound.lead, inbound.matched_by, inbound.outbound_message) == (
        nurtured_lead,
        "sender",
        None,
    )
    assert inbound.subject == "По проекту"
    assert state_of(nurtured_lead) == ("in_progress", "halted", "reply")


def test_when_leads_share_an_address_the_nurtured_one_gets_the_mail(
    nurtured_lead, make_lead, bob, receive
):
    make_lead(bob, email="ivan@client.example", title="A newer project")

    inbound = receive(sample("reply_without_in_reply_to.eml"))

    assert inbound.lead == nurtured_lead


def test_when_no_lead_sharing_an_address_is_nurtured_the_latest_gets_the_mail(
    make_lead, alice, bob, receive
):
    make_lead(alice, email="ivan@client.example", title="Old project")
    latest = make_lead(bob, email="ivan@client.example", title="New project")

    inbound = receive(sample("reply_without_in_reply_to.eml"))

    assert inbound.lead == latest
    assert latest.activities.filter(kind=Activity.Kind.EMAIL_IN).count() == 1


def test_mail_from_a_stranger_is_kept_unmatched_with_its_html_as_text(nurtured_lead, receive):
    inbound = receive(sample("stranger.eml"))

    assert (inbound.lead, inbound.matched_by) == (None, "")
    assert inbound.text.startswith("Hello!\n\nWe will bring your website to the first page")
    assert "track()" not in inbound.text and "color" not in inbound.text
    assert not InboundContact.objects.exists()
    assert state_of(nurtured_lead) == ("nurturing", "active", "")


def test_a_russian_rfc_2047_subject_and_a_windows_1251_body_are_decoded(make_lead, alice, receive):
    maria = make_lead(alice, first_name="Maria", email="maria@romashka.example", title="Склад")

    inbound = receive(sample("rfc2047_russian_subject.eml"))

    assert inbound.subject == "Коммерческое предложение по проекту «Склад»"
    assert inbound.from_name == "Мария Сидорова"
    assert inbound.to == "Алиса <alice@crm.example>"
    assert "Направляю вам вопросы по проекту «Склад»" in inbound.text
    assert (inbound.lead, inbound.matched_by) == (maria, "sender")


# --- Automatic replies ----------------------------------------------------------------------


def test_an_outlook_out_of_office_is_logged_but_does_not_stop_nurturing(
    our_email, nurtured_lead, alice, receive
):
    inbound = receive(sample("outlook_out_of_office.eml"))

    assert (inbound.kind, inbound.lead, inbound.matched_by) == (
        "auto_reply",
        nurtured_lead,
        "thread",
    )
    assert state_of(nurtured_lead) == ("nurturing", "active", "")
    entry = nurtured_lead.activities.get(kind=Activity.Kind.EMAIL_IN)
    assert entry.summary == "Automatic reply received"
    assert entry.payload["excerpt"].startswith("I am out of the office until 1 December")
    assert not InboundContact.objects.exists()
    assert not Notification.objects.filter(user=alice, message__contains="wrote back").exists()


def test_a_russian_autoreply_is_recognised_by_its_subject_alone(nurtured_lead, receive):
    inbound = receive(sample("autoreply_subject_only.eml"))

    assert inbound.kind == "auto_reply"
    assert inbound.subject.startswith("Автоответ:")
    assert state_of(nurtured_lead) == ("nurturing", "active", "")


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ({"Auto-Submitted": "auto-replied"}, "auto_reply"),
        ({"Auto-Submitted": "auto-generated"}, "auto_reply"),
        ({"Auto-Submitted": "no"}, "reply"),
        ({"X-Autoreply": "yes"}, "auto_reply"),
        ({"X-Autorespond": "Out of office"}, "auto_reply"),
        ({"Precedence": "auto_reply"}, "auto_reply"),
        ({"Subject": "Out of Office: Re: Shop"}, "auto_reply"),
        ({"Subject": "Automatic reply: Shop"}, "auto_reply"),
        ({"Subject": "Автоматический ответ: Shop"}, "auto_reply"),
        ({"Subject": "АВТООТВЕТ: Re: Shop"}, "auto_reply"),
        ({"Subject": "Re: Shop — I was out of office, sorry"}, "reply"),
        ({"Subject": "Re: Shop"}, "reply"),
    ],
)
def test_automatic_replies_are_told_from_replies(headers, kind):
    headers = {"From": "ivan@client.example", "Subject": "Re: Shop", **headers}

    assert letters.read(message(headers)).kind == kind


# --- Bounces --------------------------------------------------------------------------------


def test_a_postfix_bounce_marks_the_address_and_stops_nurturing_for_bounce(
    our_email, nurtured_lead, alice, receive
):
    inbound = receive(sample("postfix_bounce.eml"))

    assert (inbound.kind, inbound.lead, inbound.matched_by) == ("bounce", nurtured_lead, "thread")
    assert inbound.outbound_message == our_email
    nurtured_lead.refresh_from_db()
    assert (nurtured_lead.do_not_email, nurtured_lead.email_status) == (True, "bounced")
    assert state_of(nurtured_lead) == ("nurturing", "halted", "bounce")
    note = nurtured_lead.activities.get(kind=Activity.Kind.NOTE)
    assert (note.payload["status"], note.payload["inbound_email"]) == ("5.1.1", inbound.pk)
    assert "User unknown in virtual mailbox table" in note.payload["diagnostic"]
    assert "stopped" in Notification.objects.filter(user=alice).latest("id").message
    assert not InboundContact.objects.exists()  # a bounce is not the lead writing back


def test_a_bounce_of_a_letter_we_did_not_send_is_matched_by_the_failed_recipient(
    make_lead, alice, receive
):
    lead = make_lead(alice, email="nosuchperson@client.example")

    inbound = receive(sample("google_dsn_headers_only.eml"))

    assert (inbound.kind, inbound.lead, inbound.matched_by) == ("bounce", lead, "sender")
    lead.refresh_from_db()
    assert lead.email_status == Lead.EmailStatus.BOUNCED


def test_a_delayed_delivery_notice_is_kept_but_changes_nothing(our_email, nurtured_lead, receive):
    inbound = receive(sample("postfix_delayed.eml"))

    assert (inbound.kind, inbound.lead) == ("auto_reply", nurtured_lead)
    nurtured_lead.refresh_from_db()
    assert not nurtured_lead.do_not_email
    assert state_of(nurtured_lead) == ("nurturing", "active", "")
    assert not nurtured_lead.activities.filter(kind=Activity.Kind.EMAIL_IN).exists()


def test_a_bounce_for_an_address_the_lead_no_longer_has_leaves_the_new_one_alone(
    our_email, nurtured_lead, receive
):
    Lead.objects.filter(pk=nurtured_lead.pk).update(email="ivan.petrov@client.example")

    inbound = receive(sample("postfix_bounce.eml"))

    nurtured_lead.refresh_from_db()
    assert inbound.lead == nurtured_lead
    assert not nurtured_lead.do_not_email
    assert state_of(nurtured_lead) == ("nurturing", "active", "")


# --- Duplicates and odd mail ----------------------------------------------------------------


def test_the_same_message_twice_changes_nothing(our_email, nurtured_lead, alice, receive):
    first = receive(sample("gmail_reply.eml"), source="imap")
    activities = nurtured_lead.activities.count()
    notifications = Notification.objects.count()

    second = receive(sample("gmail_reply.eml"), source="anymail:Postmark")

    assert first is not None and second is None
    assert InboundEmail.objects.count() == 1
    assert nurtured_lead.activities.count() == activities
    assert Notification.objects.count() == notifications


def test_a_bounce_twice_marks_the_address_once(our_email, nurtured_lead, receive):
    receive(sample("postfix_bounce.eml"))
    receive(sample("postfix_bounce.eml"))

    assert nurtured_lead.activities.filter(kind=Activity.Kind.NOTE).count() == 1


def test_a_message_without_a_message_id_gets_a_stable_one(nurtured_lead, receive):
    def without_message_id():
        letter = sample("reply_without_in_reply_to.eml")
        del letter["Message-Id"]
        return letter

    first = receive(without_message_id())
    again = receive(without_message_id())

    assert first.message_id.endswith("@no-message-id.invalid>")
    assert again is None
    assert nurtured_lead.activities.filter(kind=Activity.Kind.EMAIL_IN).count() == 1


def test_a_copy_of_our_own_email_is_not_taken_for_a_reply(our_email, nurtured_lead, receive):
    copy = message(
        {"From": "alice@crm.example", "To": "ivan@client.example", "Message-ID": OUR_MESSAGE_ID}
    )

    assert receive(copy) is None
    assert not InboundEmail.objects.exists()


def test_a_managers_own_letter_in_the_thread_is_not_taken_for_the_leads_reply(
    our_email, nurtured_lead, receive
):
    answer = message(
        {
            "From": "Alice Manager <Alice@crm.example>",
            "To": "ivan@client.example",
            "Subject": "Re: Shop",
            "Message-ID": "<answer-1@crm.example>",
            "In-Reply-To": OUR_MESSAGE_ID,
        }
    )

    inbound = receive(answer)

    assert (inbound.lead, inbound.matched_by) == (nurtured_lead, "thread")
    assert not nurtured_lead.activities.filter(kind=Activity.Kind.EMAIL_IN).exists()
    assert state_of(nurtured_lead) == ("nurturing", "active", "")


def test_malformed_mail_is_stored_without_errors(db, receive):
    raw = (
        b"From: \xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd <ivan@client.example>\r\n"
        b"Subject: \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 =?x-unknown?B?zzz?=\r\n"
        b"Date: not a date\r\n"
        b"Message-ID: <broken@client.example>\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
        b"\r\n"
        b"Hello\x00 world \xff\r\n"
    )

    inbound = receive(BytesParser(policy=policy.default).parsebytes(raw))

    inbound.refresh_from_db()
    assert inbound.subject.startswith("Привет")
    assert inbound.from_name == "Иван"
    assert inbound.sent_at is None
    assert inbound.text.startswith("Hello world")


def test_a_very_long_text_is_capped(db, receive):
    inbound = receive(message({"From": "x@y.example", "Subject": "Long"}, "word " * 50_000))

    assert len(inbound.text) <= MAX_TEXT


@pytest.mark.parametrize(
    "quote",
    [
        "On Wed, Nov 26, 2025 at 10:00 AM Alice Manager <\nalice@crm.example> wrote:\n> Hi",
        "On Wed, 26 Nov 2025 at 10:00, Alice <alice@crm.example> wrote:\n> Hi",
        '26.11.2025, 10:00, "Alice" <alice@crm.example>:\n> Hi',
        "-----Original Message-----\nFrom: Alice\nSent: Wednesday",
        "-----Исходное сообщение-----\nОт: Alice",
        "________________________________\nFrom: Alice Manager <alice@crm.example>\nSent: Wed",
        "От: Alice Manager <alice@crm.example>\nОтправлено: 26 ноября 2025 г. 10:00",
    ],
)
def test_the_excerpt_leaves_out_the_quoted_email(quote):
    text = f"Yes, we go ahead.\nCall me tomorrow.\n\n{quote}\n"

    assert letters.reply_excerpt(text) == "Yes, we go ahead.\nCall me tomorrow."


# --- Attaching unmatched mail ---------------------------------------------------------------


def test_unmatched_mail_attached_to_a_lead_counts_as_its_reply(
    nurtured_lead, alice, receive, django_capture_on_commit_callbacks
):
    inbound = receive(sample("stranger.eml"))

    with django_capture_on_commit_callbacks(execute=True):
        attached = attach_to_lead(inbound, nurtured_lead, alice)

    inbound.refresh_from_db()
    assert attached
    assert (inbound.lead, inbound.matched_by) == (nurtured_lead, "manual")
    assert state_of(nurtured_lead) == ("in_progress", "halted", "reply")
    entry = nurtured_lead.activities.get(kind=Activity.Kind.EMAIL_IN)
    assert entry.payload["attached_by"] == "alice"


def test_mail_that_already_has_a_lead_is_not_attached_again(
    our_email, nurtured_lead, make_lead, bob, receive
):
    inbound = receive(sample("gmail_reply.eml"))
    other = make_lead(bob, email="someone@else.example")

    assert not attach_to_lead(inbound, other, bob)
    inbound.refresh_from_db()
    assert inbound.lead == nurtured_lead


def test_an_unmatched_bounce_attached_to_a_lead_marks_its_address(
    make_lead, alice, receive, django_capture_on_commit_callbacks
):
    inbound = receive(sample("google_dsn_headers_only.eml"))  # nobody has that address
    lead = make_lead(alice, email="no.such.person@client.example")

    attach_to_lead(inbound, lead, alice)

    lead.refresh_from_db()
    assert (inbound.lead, lead.email_status) == (lead, "bounced")


# --- The admin ------------------------------------------------------------------------------


@pytest.fixture
def mailbag(our_email, nurtured_lead, make_lead, bob, receive):
    """A reply from alice's lead, a letter from bob's lead, and a stranger's letter."""
    make_lead(bob, email="maria@romashka.example", title="Склад")
    return {
        "alice": receive(sample("gmail_reply.eml")),
        "bob": receive(sample("rfc2047_russian_subject.eml")),
        "stranger": receive(sample("stranger.eml")),
    }


def changelist(client, **params):
    response = client.get(reverse("admin:telephony_inboundemail_changelist"), params)
    assert response.status_code == 200
    return response.content.decode()


def test_a_manager_sees_the_mail_of_own_leads_and_unmatched_mail(mailbag, alice, client):
    client.force_login(alice)

    html = changelist(client)

    assert "Re: Принято ли решение по проекту «Shop»?" in html
    assert "Your website on the first page of search results" in html
    assert "Коммерческое предложение" not in html
    assert "Коммерческое предложение" not in changelist(client, q="Коммерческое")


def test_the_list_filters_unmatched_mail(mailbag, olga, client):
    client.force_login(olga)

    html = changelist(client, unmatched="yes")

    assert "Your website on the first page" in html
    assert "Re: Принято ли решение" not in html
    assert "Коммерческое предложение" not in html


def test_a_manager_attaches_unmatched_mail_to_own_lead_with_the_action(
    mailbag, nurtured_lead, alice, client, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    url = reverse("admin:telephony_inboundemail_changelist")
    selection = {"action": "attach_to_lead", "_selected_action": [mailbag["stranger"].pk]}

    form = client.post(url, selection)
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(url, {**selection, "lead": nurtured_lead.pk, "apply": "1"}, follow=True)

    assert "Attach incoming mail to a lead" in form.content.decode()
    assert "1 letter attached to" in done.content.decode()
    mailbag["stranger"].refresh_from_db()
    assert (mailbag["stranger"].lead, mailbag["stranger"].matched_by) == (nurtured_lead, "manual")


def test_a_manager_cannot_attach_mail_to_another_managers_lead(mailbag, alice, client):
    bobs_lead = mailbag["bob"].lead
    client.force_login(alice)

    response = client.post(
        reverse("admin:telephony_inboundemail_changelist"),
        {
            "action": "attach_to_lead",
            "_selected_action": [mailbag["stranger"].pk],
            "lead": bobs_lead.pk,
            "apply": "1",
        },
    )

    assert response.status_code == 404
    mailbag["stranger"].refresh_from_db()
    assert mailbag["stranger"].lead is None


def test_an_unmatched_letters_page_offers_to_attach_it(mailbag, nurtured_lead, alice, client):
    client.force_login(alice)
    stranger = mailbag["stranger"]
    attach_url = reverse("admin:telephony_inboundemail_attach", args=[stranger.pk])

    page = client.get(reverse("admin:telephony_inboundemail_change", args=[stranger.pk]))
    form = client.get(attach_url)
    done = client.post(attach_url, {"lead": nurtured_lead.pk, "apply": "1"})

    assert attach_url in page.content.decode()
    assert "We will bring your website" in page.content.decode()
    assert form.status_code == 200
    assert done.status_code == 302
    stranger.refresh_from_db()
    assert stranger.lead == nurtured_lead


def test_a_user_without_the_permission_cannot_attach(mailbag, nurtured_lead, make_user, client):
    charlie = make_user("charlie")  # staff, in no group
    client.force_login(charlie)
    stranger = mailbag["stranger"]

    response = client.post(
        reverse("admin:telephony_inboundemail_attach", args=[stranger.pk]),
        {"lead": nurtured_lead.pk, "apply": "1"},
    )

    assert response.status_code == 403
    stranger.refresh_from_db()
    assert stranger.lead is None
    assert not InboundEmail.objects.filter(matched_by="manual").exists()
