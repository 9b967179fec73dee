from django import forms
from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils.translation import gettext_lazy as _

from crm.models import Activity, LeadStatus


class VisibleChoiceField(forms.ModelChoiceField):
    """A choice among the rows this user may see (the field's queryset). A value outside it
    answers 404, as a row that does not exist does: the page never offers one, so only a made-up
    request sends it, and it learns nothing about whether that row exists."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except ValidationError as error:
            if error.code == "invalid_choice":
                raise Http404(_("Not found.")) from None
            raise


class MoveToStatusForm(forms.Form):
    status = forms.ModelChoiceField(
        label=_("New status"), queryset=LeadStatus.objects.all(), to_field_name="code"
    )
    reason = forms.CharField(label=_("Reason"), required=False, max_length=200)


class NoteForm(forms.ModelForm):
    """The one timeline entry a person writes: a note on a lead, in their own name, now (the
    admin fills in the rest). Every other entry is written by the CRM itself."""

    class Meta:
        model = Activity
        fields = ["lead", "summary"]
        labels = {"summary": _("note")}
        widgets = {"summary": forms.Textarea(attrs={"rows": 4})}
