"""The shipped Apache configuration in front of gunicorn, over real HTTPS on loopback: a login,
the static files' cache headers, a signed call webhook, the real client's address reaching the
app, and a slow client that does not hold gunicorn's only worker (tests/deploy/servers.py)."""

import http.client
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest

from telephony.calls.signatures import sign
from tests.deploy.servers import ADMIN_PASSWORD, ADMIN_USERNAME, WEBHOOK_SECRET, Stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack():
    with Stack() as running:
        yield running


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def cookies(self) -> SimpleCookie:
        jar = SimpleCookie()
        for value in self.headers.get_all("Set-Cookie") or []:
            jar.load(value)
        return jar


def tls_context(stack) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(stack.cert))


def request(stack, method, path, body=b"", headers=None, *, source="127.0.0.1", tls=True):
    """One request to Apache from the loopback address `source`, on a fresh connection."""
    if tls:
        connection = http.client.HTTPSConnection(
            "127.0.0.1",
            stack.https_port,
            context=tls_context(stack),
            timeout=15,
            source_address=(source, 0),
        )
    else:
        connection = http.client.HTTPConnection(
            "127.0.0.1", stack.http_port, timeout=15, source_address=(source, 0)
        )
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


def signed_headers(body: bytes) -> dict:
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Timestamp": timestamp,
        "X-Signature": sign(WEBHOOK_SECRET, timestamp, body),
    }


def call_event(event_id: str, *, padding: int = 0) -> bytes:
    """A ringing call as the PBX posts it; `padding` bytes of JSON whitespace make it larger."""
    event = {
        "event_id": event_id,
        "type": "call.ringing",
        "call_id": f"call-{event_id}",
        "direction": "in",
        "from": "+79161234567",
        "to": "+74950000000",
        "extension": "201",
        "occurred_at": "2025-11-24T12:00:00+03:00",
    }
    return json.dumps(event).encode() + b" " * padding


def gunicorn_log(stack) -> list[str]:
    return stack.gunicorn_log.read_text().splitlines()


def logged_by_gunicorn(stack, start: str) -> str:
    """gunicorn's access log line that starts with `start`; gunicorn writes it just after the
    response has gone, so it may take a moment."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [line for line in gunicorn_log(stack) if line.startswith(start)]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"gunicorn logged no request from {start!r}")


def test_plain_http_is_redirected_to_https_with_its_path(stack):
    answer = request(stack, "GET", "/admin/login/?next=/admin/", tls=False)

    assert answer.status == 301
    assert answer.headers["Location"] == f"{stack.url}/admin/login/?next=/admin/"


def test_a_manager_logs_in_through_the_admin_form(stack):
    form = request(stack, "GET", "/admin/login/")
    assert form.status == 200
    csrf_cookie = form.cookies()["csrftoken"]
    assert csrf_cookie["secure"]  # Django saw HTTPS through X-Forwarded-Proto
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.body).group(1)

    login = request(
        stack,
        "POST",
        "/admin/login/?next=/admin/",
        urlencode(
            {
                "csrfmiddlewaretoken": token.decode(),
                "username": ADMIN_USERNAME,
                "password": ADMIN_PASSWORD,
                "next": "/admin/",
            }
        ).encode(),
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf_cookie.value}",
            "Origin": stack.url,
            "Referer": f"{stack.url}/admin/login/",
        },
    )
    assert login.status == 302, login.body[:500]
    assert login.headers["Location"] == "/admin/"
    session = login.cookies()["sessionid"]
    assert session["secure"]
    assert session["httponly"]

    index = request(stack, "GET", "/admin/", headers={"Cookie": f"sessionid={session.value}"})
    assert index.status == 200
    assert ADMIN_USERNAME.encode() in index.body
    # HSTS comes from Django (SECURE_HSTS_SECONDS), not from Apache.
    assert index.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_apache_serves_static_files_for_revalidation_and_hashed_ones_for_a_year(stack):
    plain = request(stack, "GET", "/static/admin/css/base.css")
    assert plain.status == 200
    assert plain.headers["Content-Type"].startswith("text/css")
    assert plain.headers["Cache-Control"] == "no-cache"
    again = request(
        stack, "GET", "/static/admin/css/base.css", headers={"If-None-Match": plain.headers["ETag"]}
    )
    assert (again.status, again.body) == (304, b"")

    manifest = json.loads((stack.static_root / "staticfiles.json").read_text())
    hashed = manifest["paths"]["admin/css/base.css"]
    assert hashed != "admin/css/base.css"
    forever = request(stack, "GET", f"/static/{hashed}")
    assert forever.status == 200
    assert forever.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert forever.headers["Content-Type"].startswith("text/css")

    assert not [line for line in gunicorn_log(stack) if "/static/" in line]


def test_a_signed_call_webhook_is_accepted(stack):
    body = call_event("deploy-signed")

    answer = request(stack, "POST", "/telephony/events/", body, signed_headers(body))

    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["status"] == "ok"


def test_the_app_sees_the_client_that_apache_saw_not_what_the_client_claims(stack):
    # The webhooks allow 3 requests per client address (WEBHOOK_RATE). A client that writes its
    # own X-Forwarded-For every time is still one client to the app; another client is not
    # counted with it, so the app does not see the proxy's address either.
    answers = [
        request(
            stack,
            "POST",
            "/telephony/events/",
            b"{}",
            {"Content-Type": "application/json", "X-Forwarded-For": f"10.0.0.{number}"},
            source="127.0.0.2",
        ).status
        for number in range(1, 5)
    ]
    other = request(stack, "POST", "/telephony/events/", b"{}", source="127.0.0.3")

    assert answers == [401, 401, 401, 429]  # unsigned, and then over the limit
    assert other.status == 401
    # gunicorn's access log names the client too: what it claimed, then what Apache saw.
    assert logged_by_gunicorn(stack, "10.0.0.1, 127.0.0.2 via 127.0.0.1 ")


TRICKLE = 5  # the last bytes of the slow bodies, one a second


def send_slowly(stack, body: bytes, source: str, answers: dict, *, chunked=False) -> None:
    """A POST whose headers and body arrive at once but for the last TRICKLE bytes, which come
    one a second (a client on a bad line); its status goes into `answers[source]`. `chunked`:
    the body in one chunk of Transfer-Encoding: chunked instead of with a Content-Length."""
    framing = {"Content-Length": len(body)}
    signature = signed_headers(body)
    if chunked:
        framing = {"Transfer-Encoding": "chunked"}
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    head = "".join(
        f"{name}: {value}\r\n"
        for name, value in {
            "Host": f"127.0.0.1:{stack.https_port}",
            **framing,
            "Connection": "close",
            **signature,
        }.items()
    )
    raw = socket.create_connection(
        ("127.0.0.1", stack.https_port), timeout=30, source_address=(source, 0)
    )
    with tls_context(stack).wrap_socket(raw, server_hostname="127.0.0.1") as connection:
        connection.sendall(f"POST /telephony/events/ HTTP/1.1\r\n{head}\r\n".encode())
        connection.sendall(body[:-TRICKLE])
        for offset in range(len(body) - TRICKLE, len(body)):
            time.sleep(1)  # the client's own pace, not a wait for the server
            connection.sendall(body[offset : offset + 1])
        answer = http.client.HTTPResponse(connection)
        answer.begin()
        answers[source] = (answer.status, answer.read())


def test_a_slow_client_does_not_hold_the_only_gunicorn_worker(stack):
    # gunicorn runs one sync worker here. Three clients trickle their bodies in: a small one,
    # one over the 16 KiB that mod_proxy_http reads before it connects to the backend, and a
    # chunked one (which Django could not even read unless Apache gives it a Content-Length).
    small, large = call_event("deploy-slow-small"), call_event("deploy-slow-large", padding=40_000)
    chunked = call_event("deploy-slow-chunked", padding=40_000)
    answers = {}
    clients = [
        threading.Thread(target=send_slowly, args=(stack, body, source, answers), kwargs=options)
        for body, source, options in (
            (small, "127.0.0.4", {}),
            (large, "127.0.0.5", {}),
            (chunked, "127.0.0.6", {"chunked": True}),
        )
    ]
    for client in clients:
        client.start()
    time.sleep(1.5)  # both are now in the middle of their bodies

    started = time.monotonic()
    page = request(stack, "GET", "/admin/login/")
    took = time.monotonic() - started
    for client in clients:
        client.join(timeout=TRICKLE + 15)

    assert page.status == 200
    assert took < 2, f"a normal request waited {took:.1f} s behind the slow clients"
    assert {source: status for source, (status, _) in answers.items()} == {
        "127.0.0.4": 200,
        "127.0.0.5": 200,
        "127.0.0.6": 200,
    }
    # gunicorn got each slow request only once it was whole: it took no time there.
    for source in answers:
        line = logged_by_gunicorn(stack, f"{source} via ")
        assert "POST /telephony/events/" in line
        assert float(line.rsplit(" ", 1)[1]) < 1, line
