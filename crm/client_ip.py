"""The address of the client that sent a request, behind any number of trusted proxies.

Each proxy in front of the app (Apache, nginx, a load balancer) appends the address it got the
request from to X-Forwarded-For. With TRUSTED_PROXY_COUNT proxies of our own, the client is the
address the outermost of them saw: that many entries from the right, counting REMOTE_ADDR (the
proxy that talks to us). Entries further left were written by the client and are never trusted.
"""

from django.conf import settings


def client_ip(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [
        address.strip()
        for address in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if address.strip()
    ]
    chain = [*forwarded, remote]
    return chain[-(proxies + 1)] if len(chain) > proxies else chain[0]
