from django import forms
from django.utils.translation import gettext_lazy as _

from crm.models import LeadStatus


class MoveToStatusForm(forms.Form):
    status = forms.ModelChoiceField(
        label=_("New status"), queryset=LeadStatus.objects.all(), to_field_name="code"
    )
    reason = forms.CharField(label=_("Reason"), required=False, max_length=200)
