"""deploy/iis/web.config, as far as it can be tried without Windows: it is well-formed and says
what the README says, and the waitress command and environment it gives HttpPlatformHandler
serve the CRM (on loopback here, with this machine's paths for the Windows ones)."""

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.deploy.servers import read, stop, wait_for_port
from tests.smtp_server import free_port

WEB_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "iis" / "web.config"
ROOT = WEB_CONFIG.parents[2]


def web_server() -> ET.Element:
    return ET.parse(WEB_CONFIG).getroot().find("system.webServer")


def platform() -> ET.Element:
    return web_server().find("httpPlatform")


def environment() -> dict:
    return {
        variable.get("name"): variable.get("value")
        for variable in platform().find("environmentVariables")
    }


def location(path: str) -> ET.Element:
    return next(
        found.find("system.webServer")
        for found in ET.parse(WEB_CONFIG).getroot().findall("location")
        if found.get("path") == path
    )


def test_iis_hands_every_request_but_static_files_to_waitress_on_its_port():
    handler = web_server().find("handlers/add")
    assert handler.get("modules") == "httpPlatformHandler"
    assert handler.get("path") == "*"
    assert platform().get("processPath").endswith(r"\Scripts\waitress-serve.exe")
    arguments = platform().get("arguments").split()
    assert "--listen=127.0.0.1:%HTTP_PLATFORM_PORT%" in arguments
    assert arguments[-1] == "crm.wsgi:application"

    static = location("static")
    assert static.find("handlers/remove").get("name") == handler.get("name")
    assert static.find("staticContent/clientCache").get("cacheControlMode") == "DisableCache"


def test_iis_sets_the_headers_the_app_is_told_to_trust():
    rules = {rule.get("name"): rule for rule in web_server().find("rewrite/rules")}
    assert rules["crm-https"].find("action").get("type") == "Redirect"
    forwarded = {
        variable.get("name"): variable.get("value")
        for variable in rules["crm-forwarded-headers"].find("serverVariables")
    }
    assert forwarded == {
        "HTTP_X_FORWARDED_FOR": "{REMOTE_ADDR}",
        "HTTP_X_FORWARDED_PROTO": "https",
    }
    env = environment()
    assert env["SECURE_PROXY_SSL_HEADER"] == "X-Forwarded-Proto: https"
    assert env["TRUSTED_PROXY_COUNT"] == "1"


def test_iis_limits_request_bodies_as_the_apache_configuration_does():
    limit = web_server().find("security/requestFiltering/requestLimits")
    webhook = location("telephony/events").find("security/requestFiltering/requestLimits")
    assert limit.get("maxAllowedContentLength") == "3145728"
    assert webhook.get("maxAllowedContentLength") == "131072"


@pytest.mark.slow
def test_waitress_serves_the_app_as_web_config_starts_it():
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="crm-waitress-"))
    arguments = platform().get("arguments").replace("%HTTP_PLATFORM_PORT%", str(port)).split()
    env = {
        **environment(),
        # This machine's stand-ins for the Windows paths and servers.
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "SECRET_KEY": "waitress-test-" + os.urandom(16).hex(),
        "CRM_VAR_DIR": str(folder / "var"),
        "STATIC_ROOT": str(folder / "static"),
        "DATABASE_URL": f"sqlite:///{folder / 'crm.sqlite3'}",
        "CELERY_BROKER_URL": "crmfs://",
        "CACHE_URL": "locmem://",
    }
    log = folder / "waitress.log"
    with log.open("w") as output:
        process = subprocess.Popen(  # noqa: S603 - our own virtual environment's waitress
            [str(Path(sys.executable).with_name("waitress-serve")), *arguments],
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process, "waitress", log)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        # As IIS forwards it: the public host, and the headers its rewrite rules set.
        connection.request(
            "GET",
            "/admin/login/",
            headers={
                "Host": "crm.example.com",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-For": "203.0.113.7",
            },
        )
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)

    assert answer.status == 200, read(log)
    assert b'name="csrfmiddlewaretoken"' in body
    # Django took the request for HTTPS: secure cookies, and HSTS.
    assert "Secure" in answer.headers["Set-Cookie"]
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
