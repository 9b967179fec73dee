"""What other apps add to a manager's Today page, without crm importing them.

Today sends `today_panels`; each receiver returns a `TodayPanel` (or None): telephony its
missed calls to return and the manager's calls and agent state, nurture the leads whose six
emails went unanswered. Panels are shown in their `order` among crm's own.
"""

from dataclasses import dataclass, field

from django.dispatch import Signal
from django.template.loader import render_to_string

# Sent once by Today. Arguments: request.
today_panels = Signal()


@dataclass(frozen=True)
class TodayPanel:
    name: str
    template: str
    order: int = 100
    context: dict = field(default_factory=dict)

    def render(self, request) -> str:
        return render_to_string(self.template, self.context, request=request)


def panels_for(request) -> list[TodayPanel]:
    panels = [panel for _, panel in today_panels.send(sender=None, request=request) if panel]
    return sorted(panels, key=lambda panel: (panel.order, panel.name))
