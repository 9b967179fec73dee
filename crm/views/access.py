from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied


def workspace_page(view):
    """A workspace page: signed in (else to the sign-in page) and allowed to see leads (else
    403). Which leads, each page asks crm.selectors.leads_visible_to."""

    @login_required
    @wraps(view)
    def checked(request, *args, **kwargs):
        if not request.user.has_perm("crm.view_lead"):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return checked
