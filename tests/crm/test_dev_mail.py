"""Mail while developing: with DEBUG on and no mail server set, emails (nurture's included) go
to files in EMAIL_FILE_PATH, and staff read them at /dev/mail/; production is unchanged."""

import runpy
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.mail import EmailMultiAlternatives

from nurture import tasks, transport

MSK = ZoneInfo("Europe/Moscow")
SETTINGS_FILE = Path(__file__).resolve().parents[2] / "crm" / "settings.py"
MAIL_VARIABLES = ("EMAIL_URL", "EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_FILE_PATH")


@pytest.fixture
def product_settings(monkeypatch, tmp_path):
    """crm/settings.py read afresh in an environment of the test's choosing."""
    for name in MAIL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRM_VAR_DIR", str(tmp_path / "var"))

    def read(**environment):
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(SETTINGS_FILE))

    return read


def test_while_developing_without_a_mail_server_emails_go_to_files_under_var(
    product_settings, tmp_path
):
    mail = product_settings(DEBUG="true")

    assert mail["EMAIL_BACKEND"] == "crm.dev_mail.EmailBackend"
    assert mail["EMAIL_FILE_PATH"] == str(tmp_path / "var" / "mail")


def test_in_production_no_mail_settings_still_mean_smtp_on_localhost(product_settings):
    mail = product_settings(DEBUG="false")

    assert mail["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (mail["EMAIL_HOST"], mail["EMAIL_PORT"]) == ("localhost", 25)


@pytest.mark.parametrize(
    "variable, value",
    [
        ("EMAIL_URL", "smtp://mail.example:2525"),
        ("EMAIL_HOST", "mail.example"),
        ("EMAIL_PORT", "1025"),
        ("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend"),
    ],
)
def test_a_developer_who_sets_a_mail_server_gets_it(product_settings, variable, value):
    mail = product_settings(DEBUG="true", **{variable: value})

    assert mail["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"


def test_a_file_email_url_gives_its_folder(product_settings, tmp_path):
    mail = product_settings(DEBUG="false", EMAIL_URL=f"file:///{tmp_path}/sent")

    assert mail["EMAIL_BACKEND"] == "django.core.mail.backends.filebased.EmailBackend"
    assert mail["EMAIL_FILE_PATH"] == f"{tmp_path}/sent"


@pytest.fixture
def mail_folder(settings, tmp_path):
    """The development backend, writing into a folder of the test's own, and DEBUG on."""
    settings.EMAIL_BACKEND = "crm.dev_mail.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    settings.DEBUG = True
    transport.connections.reset()
    yield tmp_path / "mail"
    transport.connections.reset()


@pytest.fixture
def admin_client(client, olga):
    client.force_login(olga)
    return client


def send(subject, html="", to="ivan@client.example"):
    email = EmailMultiAlternatives(subject, "Plain words.", "crm@localhost", [to])
    if html:
        email.attach_alternative(html, "text/html")
    email.send()


def test_a_nurtured_leads_email_is_written_to_a_file_and_listed_on_the_page(
    clock,
    nurtured_lead,
    eager_tasks,
    mail_folder,
    admin_client,
    django_capture_on_commit_callbacks,
):
    clock.move_to(datetime(2025, 11, 26, 10, 0, tzinfo=MSK))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.dispatch_due() == 1  # as beat runs it; the send runs eagerly

    [saved] = mail_folder.glob("*.eml")
    listing = admin_client.get("/dev/mail/")
    page = admin_client.get(f"/dev/mail/{saved.name}/")

    assert listing.status_code == 200
    assert "Проект «Shop»" in listing.text
    assert "ivan@client.example" in listing.text
    assert "Alice Manager &lt;alice@crm.example&gt;" in listing.text
    assert f'href="/dev/mail/{saved.name}/"' in listing.text
    assert page.status_code == 200
    assert "Ivan, добрый день!" in page.text
    assert "Принято ли решение по проекту «Shop»?" in page.text
    assert "List-Unsubscribe" in page.text
    assert '<iframe sandbox srcdoc="&lt;p&gt;Ivan, добрый день!&lt;/p&gt;' in page.text


def test_the_newest_email_comes_first(clock, mail_folder, admin_client):
    send("The first")
    clock.move_to(datetime(2025, 11, 20, 19, 31, tzinfo=MSK))
    send("The second")

    listing = admin_client.get("/dev/mail/").text

    assert listing.index("The second") < listing.index("The first")


def test_every_email_has_a_file_of_its_own_over_one_reused_connection(mail_folder):
    connection = transport.connections.get()
    for number in range(3):
        connection.send_messages([EmailMultiAlternatives(f"No. {number}", "x", to=["a@b.example"])])

    assert len(list(mail_folder.glob("*.eml"))) == 3


def test_html_is_shown_escaped_in_a_sandboxed_frame_so_no_script_runs(mail_folder, admin_client):
    send("Tricky", html='<p>Hi</p><script>alert("x")</script><img src="https://t.example/p.gif">')
    [saved] = mail_folder.glob("*.eml")

    page = admin_client.get(f"/dev/mail/{saved.name}/").text

    assert '<iframe sandbox srcdoc="&lt;p&gt;Hi&lt;/p&gt;&lt;script&gt;' in page
    assert "<script>alert" not in page
    assert (
        "img-src 'self' data:"
        in admin_client.get(f"/dev/mail/{saved.name}/")["Content-Security-Policy"]
    )


def test_the_pages_are_a_404_when_debug_is_off(mail_folder, admin_client, settings):
    send("Hello")
    [saved] = mail_folder.glob("*.eml")
    settings.DEBUG = False

    assert admin_client.get("/dev/mail/").status_code == 404
    assert admin_client.get(f"/dev/mail/{saved.name}/").status_code == 404


def test_the_pages_are_a_404_for_anyone_but_staff(mail_folder, client, make_user):
    send("Hello")
    [saved] = mail_folder.glob("*.eml")
    assert client.get("/dev/mail/").status_code == 404
    outsider = make_user("outsider")
    outsider.is_staff = False
    outsider.save()
    client.force_login(outsider)

    assert client.get("/dev/mail/").status_code == 404
    assert client.get(f"/dev/mail/{saved.name}/").status_code == 404


def test_a_name_that_is_not_a_saved_email_is_a_404(mail_folder, admin_client):
    mail_folder.mkdir()
    (mail_folder / "notes.txt").write_text("not an email")

    assert admin_client.get("/dev/mail/notes.txt/").status_code == 404
    assert admin_client.get("/dev/mail/20251120T163000000000Z-0123456789ab.eml/").status_code == 404


def test_an_empty_folder_says_nothing_was_sent(settings, admin_client, tmp_path):
    settings.DEBUG = True
    settings.EMAIL_FILE_PATH = str(tmp_path / "never-created")

    assert "No email has been sent yet." in admin_client.get("/dev/mail/").text
