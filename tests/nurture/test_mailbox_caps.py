"""A mailbox's caps hold back what it may not send now and give each held-back send the
earliest moment it has room: the following minutes, per_minute to a minute, while the day has
room, then the next day. The system's own address has the default caps."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from nurture.mailbox_caps import apply_mailbox_caps
from nurture.models import MailboxLimit
from tests.conftest import MSK

NOW = datetime(2025, 11, 24, 10, 0, 20, tzinfo=MSK)  # a Monday morning
MINUTE = NOW.replace(second=0)
MIDNIGHT = datetime(2025, 11, 25, 0, 0, tzinfo=MSK)


@dataclass
class Send:
    sender_id: int | None


def rooms(sends):
    allowed, held_back = apply_mailbox_caps(sends, NOW)
    return len(allowed), [room for _, room in held_back]


def test_what_a_mailbox_cannot_send_this_minute_is_spread_over_the_next_ones(alice):
    MailboxLimit.objects.create(user=alice, per_minute=2, per_day=100)

    sent, held = rooms([Send(alice.pk)] * 7)

    assert sent == 2
    minutes = [MINUTE + timedelta(minutes=m) for m in (1, 1, 2, 2, 3)]
    assert held == minutes


def test_what_the_day_has_no_room_for_waits_for_the_next_day(alice):
    MailboxLimit.objects.create(user=alice, per_minute=2, per_day=5)

    sent, held = rooms([Send(alice.pk)] * 8)

    assert sent == 2
    assert held == [MINUTE + timedelta(minutes=m) for m in (1, 1, 2)] + [MIDNIGHT] * 3


def test_each_mailbox_has_its_own_caps(alice, bob):
    MailboxLimit.objects.create(user=alice, per_minute=1, per_day=100)

    allowed, held_back = apply_mailbox_caps([Send(alice.pk), Send(alice.pk), Send(bob.pk)], NOW)

    assert [send.sender_id for send in allowed] == [alice.pk, bob.pk]
    assert [send.sender_id for send, _ in held_back] == [alice.pk]


def test_a_paused_mailbox_waits_for_the_next_day(alice):
    MailboxLimit.objects.create(user=alice, per_minute=0, per_day=100)
    assert rooms([Send(alice.pk)]) == (0, [MIDNIGHT])


@pytest.mark.django_db
def test_the_systems_own_address_has_the_default_caps(settings):
    settings.NURTURE_MAILBOX_PER_MINUTE, settings.NURTURE_MAILBOX_PER_DAY = 3, 4

    assert rooms([Send(None)] * 6) == (3, [MINUTE + timedelta(minutes=1)] + [MIDNIGHT] * 2)
