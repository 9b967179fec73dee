from django.http import Http404
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from nurture import rendering, services
from nurture.models import OutboundMessage


@csrf_exempt  # RFC 8058 one-click: the mail provider POSTs without a session or a form
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    """GET asks to confirm (link scanners must not unsubscribe anybody); POST unsubscribes."""
    message_id = rendering.message_id_from_token(token)
    message = (
        OutboundMessage.objects.select_related("enrollment__lead").filter(pk=message_id).first()
        if message_id
        else None
    )
    if message is None:
        raise Http404
    lead = message.enrollment.lead
    if request.method == "POST":
        services.unsubscribe(lead)
        return render(request, "nurture/unsubscribed.html", {"lead": lead})
    return render(
        request,
        "nurture/unsubscribe_confirm.html",
        {"lead": lead, "already": lead.do_not_email},
    )
