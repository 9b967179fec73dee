from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from nurture import rendering, selectors, services
from nurture.models import Enrollment, OutboundMessage


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


@login_required
@require_POST
def stop(request, enrollment_id):
    """A manager stops nurturing one of their leads by hand (from the lead card)."""
    enrollment = get_object_or_404(selectors.enrollments_visible_to(request.user), pk=enrollment_id)
    if not request.user.has_perm("crm.change_lead"):
        raise PermissionDenied
    if services.halt(Enrollment.objects.filter(pk=enrollment.pk), Enrollment.HaltReason.MANUAL):
        messages.success(request, gettext("Nurturing stopped."))
    return redirect("crm:lead_detail", lead_id=enrollment.lead_id)


@login_required
@require_POST
def restart(request, enrollment_id):
    """Start the sequence again from its first email (the lead must still be in the status that
    enrolls it)."""
    enrollment = get_object_or_404(selectors.enrollments_visible_to(request.user), pk=enrollment_id)
    if not request.user.has_perm("crm.change_lead"):
        raise PermissionDenied
    if services.restart(enrollment):
        messages.success(request, gettext("Nurturing starts again from email 1."))
    else:
        messages.error(request, gettext("Only a lead in Nurturing can be nurtured again."))
    return redirect("crm:lead_detail", lead_id=enrollment.lead_id)
