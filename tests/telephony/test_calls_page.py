"""The workspace's calls page: the log, its CSV export for Excel, and the report with its chart."""

import csv
import io
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from telephony.calls_page import chart
from telephony.calls_page.selectors import clock as as_clock
from telephony.models import Call
from tests.conftest import MSK

pytestmark = pytest.mark.django_db

LOG, CSV, REPORT = reverse("calls:log"), reverse("calls:export"), reverse("calls:report")
# The clock stands at Thursday 20 November 2025, 19:30 in Moscow (tests/conftest.py).
WEDNESDAY = datetime(2025, 11, 19, 10, 0, tzinfo=MSK)


def make_call(call_id, *, at=WEDNESDAY, agent=None, lead=None, direction="in", talk=None, **fields):
    """A finished call as the PBX left it: answered with `talk` seconds of talk, else missed."""
    answered = at + timedelta(seconds=5) if talk is not None else None
    ended = (answered or at) + timedelta(seconds=talk or 20)
    fields.setdefault("from_raw", "+7 916 123-45-67" if direction == "in" else "201")
    fields.setdefault("to_raw", "+7 495 000-00-00" if direction == "in" else "+7 916 123-45-67")
    return Call.objects.create(
        source="pbx",
        call_id=call_id,
        direction=direction,
        agent=agent,
        lead=lead,
        state=Call.State.ENDED if talk is not None else Call.State.MISSED,
        started_at=at,
        answered_at=answered,
        ended_at=ended,
        last_event_at=ended,
        duration=int((ended - at).total_seconds()),
        talk_time=talk,
        **fields,
    )


@pytest.fixture
def calls(clock, alice, bob, make_lead):
    """Alice's lead Anna called alice; bob's lead Boris called bob, then alice (who took it);
    alice called Anna back on Thursday, and it was recorded."""
    anna = make_lead(alice, first_name="Анна", last_name="Иванова", title="Shop", phone_raw="")
    boris = make_lead(
        bob, first_name="Boris", last_name="Bakerov", title="Bobs bakery", email="b@x.example"
    )
    return {
        "anna": anna,
        "boris": boris,
        "annas": make_call("annas", agent=alice, lead=anna, talk=65),
        "boris-bob": make_call(
            "boris-bob", agent=bob, lead=boris, talk=90, recording_url="https://pbx.example/b.mp3"
        ),
        "boris-alice": make_call(
            "boris-alice",
            agent=alice,
            lead=boris,
            at=WEDNESDAY + timedelta(hours=1),
            talk=30,
            recording_url="https://pbx.example/ba.mp3",
            from_raw="+7 916 222-22-22",
        ),
        "anna-back": make_call(
            "anna-back",
            agent=alice,
            lead=anna,
            direction="out",
            at=WEDNESDAY + timedelta(days=1),
            talk=125,
            recording_url="https://pbx.example/a.mp3",
        ),
    }


def html(client, url, status=200, **params):
    response = client.get(url, params)
    assert response.status_code == status
    return response.content.decode()


# --- The log ---------------------------------------------------------------------------------


def test_a_manager_sees_her_calls_newest_first_and_a_colleagues_lead_by_whose_it_is(
    client, alice, calls
):
    client.force_login(alice)

    page = html(client, LOG)

    assert "Bobs bakery" not in page and "Boris" not in page
    assert "a lead of Bob Manager" in page  # the call of bob's lead that alice took
    assert "https://pbx.example/b.mp3" not in page  # bob's call with his lead
    anna = reverse("crm:lead_detail", args=[calls["anna"].pk])
    assert f'<a href="{anna}">Анна Иванова</a>' in page
    assert page.index("https://pbx.example/a.mp3") < page.index("https://pbx.example/ba.mp3")
    assert "3 calls" in page
    assert "2:05" in page  # Thursday's talk time


def test_a_supervisor_sees_every_call_and_filters_by_manager(client, olga, bob, calls):
    client.force_login(olga)

    everyone = html(client, LOG)
    bobs = html(client, LOG, manager=bob.pk)

    assert "4 calls" in everyone and "Bobs bakery" not in everyone  # names, not titles
    assert "Boris Bakerov" in everyone and "Анна Иванова" in everyone
    assert "1 call" in bobs and "Анна Иванова" not in bobs


def test_a_manager_filtering_by_a_colleague_gets_a_404(client, alice, bob, calls):
    client.force_login(alice)

    assert client.get(LOG, {"manager": bob.pk}).status_code == 404
    assert client.get(CSV, {"manager": bob.pk}).status_code == 404


def test_the_log_filters_by_direction_state_and_days(client, alice, calls):
    client.force_login(alice)

    outbound = html(client, LOG, direction="out")
    thursday = html(client, LOG, date_from="2025-11-20", date_to="2025-11-20")
    missed = html(client, LOG, state="missed")

    assert "1 call" in outbound and "https://pbx.example/a.mp3" in outbound
    assert "1 call" in thursday and "https://pbx.example/a.mp3" in thursday
    assert "0 calls" in missed and "No calls match." in missed


@pytest.mark.parametrize(
    "params",
    [
        {"direction": "sideways"},
        {"state": "exploded"},
        {"date_from": "yesterday"},
        {"date_from": "2025-11-20", "date_to": "2025-11-19"},
    ],
)
def test_a_bad_filter_is_a_400_that_says_why(client, alice, calls, params):
    client.force_login(alice)

    page = html(client, LOG, status=400, **params)

    assert 'class="errorlist"' in page and "Анна" not in page
    assert client.get(CSV, params).status_code == 400


def test_the_pages_keep_the_filters(client, alice, calls):
    for number in range(60):
        make_call(f"more-{number}", agent=alice, at=WEDNESDAY - timedelta(minutes=number))
    client.force_login(alice)

    page = html(client, LOG, state="missed")

    assert "state=missed&amp;page=2" in page
    assert "60 calls" in page


def test_the_log_asks_the_database_as_often_for_120_calls_as_for_60(
    client, alice, bob, calls, make_lead, django_assert_max_num_queries
):
    def add(first, count):
        for number in range(first, first + count):
            lead = make_lead(bob if number % 2 else alice, email=f"l{number}@x.example")
            at = WEDNESDAY - timedelta(hours=number)
            make_call(f"more-{number}", agent=alice, lead=lead, at=at)

    client.force_login(alice)
    add(0, 60)  # more than a page, so that it is counted
    with django_assert_max_num_queries(20) as few:
        client.get(LOG)
    add(60, 60)

    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(LOG)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(CSV)


def test_a_call_of_several_possible_leads_names_only_the_readers_own(
    client, alice, bob, calls, make_lead
):
    mine = make_lead(alice, title="Flower shop", first_name="Flora", email="f@x.example")
    theirs = make_lead(bob, title="Flower farm", first_name="Fiona", email="g@x.example")
    call = make_call("shared", agent=bob)
    call.candidate_leads.set([mine, theirs])
    client.force_login(alice)

    page = html(client, LOG)

    assert "one of:" in page and "Flora Petrov" in page and "Fiona" not in page


def test_the_calls_page_is_in_the_menu_and_needs_a_sign_in_and_the_right_to_see_calls(
    client, alice, make_user
):
    assert client.get(LOG).status_code == 302
    client.force_login(make_user("guest"))
    assert client.get(LOG).status_code == 403
    client.force_login(alice)
    assert f'<a href="{LOG}" aria-current="page">Calls</a>' in html(client, LOG)


# --- The CSV file ----------------------------------------------------------------------------


def test_the_csv_opens_in_a_russian_excel_as_it_is(client, alice, calls):
    client.force_login(alice)
    client.cookies["django_language"] = "ru"

    response = client.get(CSV, {"direction": "out"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="calls-20251120.csv"'
    raw = response.content
    assert raw.startswith(b"\xef\xbb\xbf")  # the byte-order mark: Excel reads UTF-8
    header, *rows = csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";")
    assert header[5] == "Менеджер"  # the column titles in the reader's language
    assert len(header) == 9 and rows == [
        [
            "2025-11-20 10:00:00",  # Moscow time, as Excel reads a date and time
            "исходящий",
            "завершён",
            "Анна Иванова",
            "'+7 916 123-45-67",  # text, not a formula
            "Alice Manager",
            "130",
            "125",
            "https://pbx.example/a.mp3",
        ]
    ]
    assert "Анна Иванова".encode() in raw and b";" in raw.splitlines()[0]


def test_the_csv_has_every_page_of_the_readers_calls_only(client, alice, calls):
    for number in range(60):
        make_call(f"more-{number}", agent=alice, at=WEDNESDAY - timedelta(minutes=number))
    client.force_login(alice)

    text = client.get(CSV).content.decode("utf-8-sig")

    rows = list(csv.reader(io.StringIO(text), delimiter=";"))[1:]
    assert len(rows) == 63
    assert "Bobs bakery" not in text and "Boris" not in text
    assert "a lead of Bob Manager" in text and "https://pbx.example/b.mp3" not in text


# --- The report ------------------------------------------------------------------------------


def test_the_report_shows_the_last_14_days_per_manager_with_a_chart(client, olga, calls):
    make_call("old", agent=olga, at=WEDNESDAY - timedelta(days=20))
    client.force_login(olga)

    page = html(client, REPORT)

    assert 'value="2025-11-07"' in page and 'value="2025-11-20"' in page
    assert 'role="img"' in page and '<title id="chart-title">' in page
    assert "Calls per day from 7 Nov 2025 to 20 Nov 2025" in page
    assert "In all: 4 calls. The busiest day: Wed 19 Nov, 3 calls." in page
    assert "Alice Manager" in page and "Bob Manager" in page
    assert ">Olga Manager</td>" not in page  # her call was 20 days ago
    assert "3:40" in page  # alice's talk time: 65 + 30 + 125 seconds


def test_a_manager_reports_on_herself_only(client, alice, bob, calls):
    client.force_login(alice)

    page = html(client, REPORT)

    assert "Alice Manager" in page and "Bob Manager" not in page
    assert client.get(REPORT, {"manager": bob.pk}).status_code == 404


@pytest.mark.parametrize(
    "params",
    [
        {"date_from": "2025-11-20", "date_to": "2025-11-01"},
        {"date_from": "2024-01-01", "date_to": "2025-11-20"},
        {"date_from": "soon"},
    ],
)
def test_a_bad_period_is_a_400(client, olga, params):
    client.force_login(olga)

    assert 'class="errorlist"' in html(client, REPORT, status=400, **params)


def test_the_chart_is_in_numbers_a_dot_decimal_in_russian_too(client, olga, calls):
    client.force_login(olga)
    client.cookies["django_language"] = "ru"

    page = html(client, REPORT, date_from="2025-11-19", date_to="2025-11-20")

    svg = page[page.index("<svg") : page.index("</svg>")]
    assert "," not in svg.split("<title", 1)[0]  # the viewBox
    for part in svg.split('"')[1::2]:
        if part[:1].isdigit():
            float(part.split()[0])  # every coordinate reads as a number


def test_bars_are_as_tall_as_their_calls():
    days = [chart_row(inbound=3, missed=1, outbound=1), chart_row(), chart_row(outbound=2)]

    drawn = chart.calls_per_day(days)

    monday, tuesday, wednesday = drawn.columns
    assert [segment.kind for segment in monday.segments] == ["outbound", "inbound", "missed"]
    plot = drawn.baseline - chart.TOP
    assert sum(segment.height for segment in monday.segments) == pytest.approx(plot * 4 / 5)
    assert tuesday.segments == [] and wednesday.calls == 2
    assert [tick.value for tick in drawn.ticks] == [0, 1, 2, 3, 4, 5]
    assert drawn.busiest is monday


def chart_row(inbound=0, missed=0, outbound=0):
    from datetime import date

    from telephony.calls.reports import ReportRow

    return ReportRow(date(2025, 11, 24), None, inbound, outbound, missed, 0, 0, 0)


@pytest.mark.parametrize(
    ("top", "nice"), [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20), (180, 200), (501, 1000)]
)
def test_the_scale_ends_at_a_round_number(top, nice):
    assert chart.nice_top(top) == nice


@pytest.mark.parametrize(
    ("seconds", "shown"), [(None, ""), (0, "0:00"), (65, "1:05"), (3723, "1:02:03")]
)
def test_times_read_as_on_a_clock(seconds, shown):
    assert as_clock(seconds) == shown


def test_a_supervisor_without_the_group_of_managers_still_sees_all(client, make_user, calls):
    boss = make_user("boss", "Supervisors")
    boss.groups.add(Group.objects.get(name="Supervisors"))
    client.force_login(boss)

    assert "4 calls" in html(client, LOG)
