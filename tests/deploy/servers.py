"""The production web stack on loopback, for the deployment tests: the CRM in its production
settings (DEBUG off, a SQLite database migrated and collectstatic run, all in a temporary
folder), gunicorn with the shipped deploy/gunicorn.conf.py, and Debian's Apache httpd with the
shipped deploy/apache/crm.conf in front of it.

Apache's part here is only what Debian's apache2.conf does on a real server (the modules, the
MPM, the listening ports, a pid file); the CRM's site is deploy/apache/crm.conf itself, given
other ports and paths through its Define lines. Works as root (Apache's children then run as
www-data, or nobody) and as an ordinary user.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.services import IN_CI
from tests.smtp_server import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
START_TIMEOUT = 30  # seconds
WEBHOOK_SECRET = "deploy-test-webhook-secret"
ADMIN_USERNAME, ADMIN_PASSWORD = "deploy-admin", "a-long-deploy-test-password"
# Few, so a test can show that the limiter counts per real client address.
WEBHOOK_RATE = "3/24h"

# What Debian's apache2 package enables, and what `a2enmod` in crm.conf's header adds.
MODULES = [
    "mpm_event",
    "authz_core",
    "alias",
    "mime",
    "env",
    "headers",
    "reqtimeout",
    "buffer",
    "proxy",
    "proxy_http",
    "socache_shmcb",
    "ssl",
]


def apache_binary() -> str | None:
    found = shutil.which("apache2") or "/usr/sbin/apache2"
    return found if os.access(found, os.X_OK) else None


def require_apache() -> str:
    binary = apache_binary()
    if binary and APACHE_MODULES.is_dir():
        return binary
    message = "Apache httpd is not installed (Debian/Ubuntu: apt-get install apache2)"
    if IN_CI:
        pytest.fail(f"{message}, and CI requires it")
    pytest.skip(message)


def wait_for_port(port: int, process: subprocess.Popen, name: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {read(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {port} within {START_TIMEOUT} s: {read(log)}")


def read(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def unprivileged_user() -> str:
    for name in ("www-data", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("no unprivileged user (www-data or nobody) for Apache's children")


class Stack:
    """`with Stack() as stack:` the CRM under gunicorn (one sync worker) behind Apache."""

    def __init__(self):
        self.apache_binary = require_apache()
        self.folder = Path(tempfile.mkdtemp(prefix="crm-deploy-"))
        self.http_port, self.https_port, self.gunicorn_port = free_port(), free_port(), free_port()
        self.static_root = self.folder / "static"
        self.gunicorn_log = self.folder / "gunicorn-access.log"
        self.gunicorn_errors = self.folder / "gunicorn-error.log"
        self.apache_dir = self.folder / "apache"
        self.cert = self.folder / "tls" / "cert.pem"
        self.gunicorn = self.apache = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def env(self) -> dict:
        """The production environment (crm.env.example's variables), for this stack."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "DJANGO_SETTINGS_MODULE": "crm.settings",
            "SECRET_KEY": "deploy-test-" + os.urandom(16).hex(),
            "CRM_VAR_DIR": str(self.folder / "var"),
            "DATABASE_URL": f"sqlite:///{self.folder / 'crm.sqlite3'}",
            "STATIC_ROOT": str(self.static_root),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SITE_URL": self.url,
            "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
            "TRUSTED_PROXY_COUNT": "1",
            "TELEPHONY_WEBHOOK_SECRETS": WEBHOOK_SECRET,
            "RATE_LIMIT_WEBHOOKS": WEBHOOK_RATE,
            "LANGUAGE_CODE": "en",
            "CELERY_TASK_ALWAYS_EAGER": "true",
        }

    def manage(self, *args: str, **env) -> None:
        subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env={**self._env, **env},
            check=True,
            capture_output=True,
            timeout=120,
        )

    def __enter__(self):
        try:
            self._env = self.env()
            self._prepare_app()
            self._start_gunicorn()
            self._make_certificate()
            self._start_apache()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        stop(self.apache)
        stop(self.gunicorn)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _prepare_app(self) -> None:
        self.manage("migrate", "--noinput")
        self.manage(
            "createsuperuser",
            "--noinput",
            "--username",
            ADMIN_USERNAME,
            "--email",
            "admin@crm.example",
            DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
        )
        self.manage("collectstatic", "--noinput")
        # The hashed copies ManifestStaticFilesStorage would add, beside the plain ones, so
        # that Apache's cache rule for hashed names can be seen too.
        (self.folder / "manifest_settings.py").write_text(
            "from crm.settings import *  # noqa\n"
            "STORAGES = {\n"
            "    'default': {'BACKEND': 'django.core.files.storage.FileSystemStorage'},\n"
            "    'staticfiles': {\n"
            "        'BACKEND': 'django.contrib.staticfiles.storage.ManifestStaticFilesStorage'\n"
            "    },\n"
            "}\n"
        )
        self.manage(
            "collectstatic",
            "--noinput",
            DJANGO_SETTINGS_MODULE="manifest_settings",
            PYTHONPATH=str(self.folder),
        )

    def _start_gunicorn(self) -> None:
        command = [
            str(Path(sys.executable).with_name("gunicorn")),
            "--config",
            str(DEPLOY / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.gunicorn_port}",
            "--workers",
            "1",
            "--access-logfile",
            str(self.gunicorn_log),
            "--error-logfile",
            str(self.gunicorn_errors),
        ]
        self.gunicorn = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            command, cwd=ROOT, env=self._env, stdin=subprocess.DEVNULL
        )
        wait_for_port(self.gunicorn_port, self.gunicorn, "gunicorn", self.gunicorn_errors)

    def _make_certificate(self) -> None:
        self.cert.parent.mkdir()
        subprocess.run(  # noqa: S603 - openssl with our own arguments
            [
                shutil.which("openssl") or "/usr/bin/openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(self.cert.with_name("key.pem")),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def apache_config(self) -> str:
        """Debian's part of the server (apache2.conf, ports.conf, mods-enabled) in a few lines,
        then the shipped site with this stack's ports and paths."""
        run = self.apache_dir / "run"
        lines = [
            f'ServerRoot "{self.apache_dir}"',
            f'DefaultRuntimeDir "{run}"',
            f'PidFile "{run}/httpd.pid"',
            f'ErrorLog "{self.apache_dir}/error.log"',
            "LogLevel warn",
            "ServerName 127.0.0.1",
            "TypesConfig /etc/mime.types",
            *(f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so" for name in MODULES),
            "StartServers 1",
            "ServerLimit 2",
            "ThreadsPerChild 16",
            "MaxRequestWorkers 32",
            f"Listen 127.0.0.1:{self.http_port}",
            f"Listen 127.0.0.1:{self.https_port}",
        ]
        if os.geteuid() == 0:
            user = unprivileged_user()
            lines += [f"User {user}", f"Group #{pwd.getpwnam(user).pw_gid}"]
        defines = {
            "CRM_SERVER_NAME": "127.0.0.1",
            "CRM_PUBLIC_URL": self.url,
            "CRM_HTTP_PORT": self.http_port,
            "CRM_HTTPS_PORT": self.https_port,
            "CRM_BACKEND": f"http://127.0.0.1:{self.gunicorn_port}",
            "CRM_STATIC_ROOT": self.static_root,
            "CRM_TLS_CERT": self.cert,
            "CRM_TLS_KEY": self.cert.with_name("key.pem"),
            "CRM_LOG_DIR": self.apache_dir / "logs",
        }
        lines += [f"Define {name} {value}" for name, value in defines.items()]
        lines.append(f'Include "{DEPLOY / "apache" / "crm.conf"}"')
        return "\n".join(lines) + "\n"

    def _start_apache(self) -> None:
        for folder in (self.apache_dir / "run", self.apache_dir / "logs"):
            folder.mkdir(parents=True)
        # Apache's children (www-data when started as root) read the static files.
        self.folder.chmod(0o755)
        config = self.apache_dir / "httpd.conf"
        config.write_text(self.apache_config())
        check = subprocess.run(  # noqa: S603 - our own binary and arguments
            [self.apache_binary, "-f", str(config), "-t"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check.returncode:
            raise RuntimeError(f"apache2 -t: {check.stdout}{check.stderr}")
        self.apache = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [self.apache_binary, "-f", str(config), "-DFOREGROUND"],
            stdin=subprocess.DEVNULL,
            env={"PATH": self._env["PATH"], "LANG": "C"},
        )
        wait_for_port(self.https_port, self.apache, "Apache", self.apache_dir / "error.log")
