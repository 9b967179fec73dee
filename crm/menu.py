"""The workspace's menu, which other apps add their pages to without crm importing them.

Each receiver of `workspace_menu` returns a `MenuItem` (or None, for a user who may not see the
page); the base layout shows them in their `order`, after crm's own pages.
"""

from dataclasses import dataclass

from django.dispatch import Signal
from django.urls import reverse
from django.utils.translation import gettext

# Sent once per request by the base layout's context processor. Arguments: request.
workspace_menu = Signal()

# Sent once per request likewise: each receiver returns a PageExtra, templates to include in
# every workspace page (telephony's screen pop and agent state, for a user with a phone), or None.
workspace_extras = Signal()


@dataclass(frozen=True)
class MenuItem:
    label: str
    url: str
    order: int = 100


def menu_for(request) -> list[MenuItem]:
    items = [
        MenuItem(gettext("Today"), reverse("crm:today"), 10),
        MenuItem(gettext("Leads"), reverse("crm:lead_list"), 20),
        MenuItem(gettext("Pipeline"), reverse("crm:pipeline"), 30),
    ]
    items += [item for _, item in workspace_menu.send(sender=None, request=request) if item]
    return sorted(items, key=lambda item: item.order)


def current_item(items: list[MenuItem], path: str) -> MenuItem | None:
    """The item whose page `path` is on: the longest URL it starts with ("/" only for "/")."""
    matches = [
        item
        for item in items
        if path == item.url or (item.url != "/" and path.startswith(item.url))
    ]
    return max(matches, key=lambda item: len(item.url), default=None)


@dataclass(frozen=True)
class PageExtra:
    head_template: str = ""  # in <head>: styles, scripts and their settings
    header_template: str = ""  # in the page's header, beside the user's name


def extras_for(request) -> list[PageExtra]:
    return [extra for _, extra in workspace_extras.send(sender=None, request=request) if extra]
