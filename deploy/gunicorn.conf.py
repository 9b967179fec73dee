"""gunicorn's settings for the CRM's web process, behind Apache httpd or nginx on the same host.

Run from the checkout, with the environment of /etc/crm/crm.env (deploy/systemd/crm-web.service):

    .venv/bin/gunicorn -c deploy/gunicorn.conf.py

A command-line option overrides the value here (`--bind 127.0.0.1:8001 --workers 1`); so do
the GUNICORN_* variables read below.
"""

import gc
import multiprocessing
import os

wsgi_app = "crm.wsgi:application"

# Only the proxy on this host talks to gunicorn; it never faces the internet itself.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# Sync workers: one request at a time per process, which suits Django's ORM and needs no
# thread-safety thoughts. They are safe only behind a proxy that reads slow clients' requests
# for them (the shipped Apache and nginx configurations do: see deploy/apache/crm.conf).
worker_class = "sync"
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8)))

# A request that takes longer than this is killed (the worker restarts; the client gets a 502
# from the proxy). A worker also counts as silent while it writes a large response to a
# slow reader once the proxy's buffers are full, so keep big downloads under this.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
# On SIGTERM (systemctl stop/restart) a worker finishes its request within this time.
graceful_timeout = 30
# (No keepalive: sync workers answer one request per connection and close it; keeping
# connections to the browsers open is the proxy's job.)
# A fresh process now and then, staggered, so that no slow leak grows for months.
max_requests = 2000
max_requests_jitter = 200
# The workers' heartbeat files: in memory, so a slow or full disk never stalls them.
# (gunicorn creates them itself, one per worker, mode 0600.)
SHM = "/dev/shm"  # noqa: S108
worker_tmp_dir = SHM if os.path.isdir(SHM) else None

# The proxy is trusted to say the request came over HTTPS (X-Forwarded-Proto: https); only
# from these addresses. Django decides by SECURE_PROXY_SSL_HEADER, and gunicorn by this, for
# wsgi.url_scheme. A list of addresses, or "*" when the proxy is on another machine reachable
# only by it.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Logs: to stderr (the journal) unless GUNICORN_ACCESS_LOG names a file (deploy/logrotate/crm
# rotates /var/log/crm/*.log, and SIGUSR1 makes gunicorn reopen it).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "-")
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Apache's "combined" format, but the first field is X-Forwarded-For as the proxy sent it: every
# request comes from the proxy's address, so %(h)s alone would say nothing. The proxy appends the
# address it saw, so the last entry is the real client; entries before it were sent by the
# client and may be anything. %(L)s: seconds taken.
access_log_format = (
    '%({x-forwarded-for}i)s via %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(L)s'
)
# The proxy's name for the process list (ps, top).
proc_name = "crm-web"


def post_worker_init(worker):
    """The worker has loaded Django and the CRM: keep what it loaded out of Python's full
    garbage collections, which otherwise walk all of it again and again (a pause of 50–90 ms
    every hundred requests or so, measured on the lead list; 20 ms with this)."""
    gc.freeze()
