"""What every workspace page's layout shows: the menu and the unread count."""

from functools import cache

from crm.menu import current_item, extras_for, menu_for
from crm.models import Notification


def workspace(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or request.path.startswith("/admin/"):
        return {}
    # Once a request: a page renders its panels (Today's, the card's) with the request too.
    if (built := getattr(request, "_workspace_context", None)) is None:
        built = request._workspace_context = _build(request, user)
    return built


def _build(request, user) -> dict:
    items = menu_for(request)
    return {
        "workspace_menu": items,
        "workspace_current": current_item(items, request.path),
        "workspace_extras": extras_for(request),
        # Counted only when a page shows it (an htmx fragment does not), once. A callable, which
        # the template calls, not a lazy object: Russian plural rules take `count % 10`, which a
        # SimpleLazyObject does not support.
        "unread_notifications": cache(
            lambda: Notification.objects.filter(user=user, is_read=False).count()
        ),
    }
