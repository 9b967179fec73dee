from django.http import Http404
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from nurture import rendering, selectors, services
from nurture.models import OutboundMessage


@csrf_exempt  # RFC 8058 one-click: the mail provider POSTs without a session or a form
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    """GET asks to confirm (link scanners must not unsubscribe anybody); POST unsubscribes the
    address the email went to. An address already suppressed is told so, and nothing is
    written again."""
    message_id = rendering.message_id_from_token(token)
    message = (
        OutboundMessage.objects.select_related("enrollment__lead").filter(pk=message_id).first()
        if message_id
        else None
    )
    if message is None:
        raise Http404
    email = message.to_email or message.enrollment.lead.email
    if request.method == "POST":
        suppression = services.unsubscribe(message)
        return render(
            request, "nurture/unsubscribed.html", {"email": email, "already": suppression is None}
        )
    return render(
        request,
        "nurture/unsubscribe_confirm.html",
        {"email": email, "already": selectors.active_suppression(email) is not None},
    )
