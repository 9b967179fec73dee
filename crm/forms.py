from datetime import timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.models import Activity, Lead, LeadStatus, Profile, user_display_name
from crm.preferences import time_zone_choices
from crm.selectors import (
    SUPERVISORS_GROUP,
    can_see_all_leads,
    duplicates_of,
    leads_visible_to,
    people_to_assign,
    search_leads,
    without_next_step,
)
from crm.widgets import Select


class ChoicesInOneQuery(forms.models.ModelChoiceIterator):
    """A choice field's rows read by one ordinary query. Django reads them with
    queryset.iterator(), which on PostgreSQL opens a server-side cursor (DECLARE ... WITH HOLD,
    FETCH, CLOSE: three round trips and a copy of the rows) for a list of a dozen statuses or
    people; the rows read here stay on the field's queryset for the rest of the request."""

    def __iter__(self):
        if self.field.empty_label is not None:
            yield ("", self.field.empty_label)
        for row in self.queryset:
            yield self.choice(row)


class ModelChoiceField(forms.ModelChoiceField):
    iterator = ChoicesInOneQuery
    widget = Select


class ChoiceField(forms.ChoiceField):
    widget = Select


def selects_for_choices(db_field, **kwargs):
    """A ModelForm's formfield_callback: a model field with choices gets the workspace's
    Select (the others keep the field's own widget)."""
    if db_field.choices and "widget" not in kwargs:
        kwargs["widget"] = Select
    return db_field.formfield(**kwargs)


class VisibleChoiceField(ModelChoiceField):
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
    status = ModelChoiceField(
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


class PersonChoiceField(VisibleChoiceField):
    def label_from_instance(self, user):
        return user_display_name(user)


class LeadFilterForm(forms.Form):
    """The lead list's filters, read from the URL (so a view can be bookmarked)."""

    SORTS = {
        "activity": ("-last_activity_at", "-pk"),
        "created": ("-created_at", "-pk"),
        "name": ("last_name", "first_name", "pk"),
        "status": ("status__order", "-last_activity_at", "-pk"),
    }

    q = forms.CharField(label=_("Search"), required=False, max_length=200)
    status = ModelChoiceField(
        label=_("Status"),
        queryset=LeadStatus.objects.all(),
        to_field_name="code",
        required=False,
        empty_label=_("Any status"),
    )
    manager = PersonChoiceField(
        label=_("Manager"),
        queryset=get_user_model().objects.none(),
        required=False,
        empty_label=_("Everyone"),
    )
    no_next_step = forms.BooleanField(label=_("No next step"), required=False)
    sort = ChoiceField(
        label=_("Sort by"),
        required=False,
        choices=[
            ("activity", _("Last activity")),
            ("created", _("Newest")),
            ("name", _("Name")),
            ("status", _("Status")),
        ],
    )

    def __init__(self, data, *, user, extra_filters=()):
        super().__init__(data)
        if can_see_all_leads(user):
            self.fields["manager"].queryset = people_to_assign(user)
        else:
            del self.fields["manager"]
        self.extra_filters = list(extra_filters)
        for extra in self.extra_filters:
            self.fields[extra.name] = extra.field

    def filter(self, leads):
        data = self.cleaned_data
        leads = search_leads(leads, data["q"])
        if data["status"]:
            leads = leads.filter(status=data["status"])
        if data.get("manager"):
            leads = leads.filter(responsible=data["manager"])
        if data["no_next_step"]:
            leads = without_next_step(leads)
        for extra in self.extra_filters:
            if data.get(extra.name):
                leads = extra.apply(leads, data[extra.name])
        return leads.order_by(*self.SORTS[data["sort"] or "activity"])


class VisibleMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Several rows among those this user may see; one outside them answers 404 (see
    VisibleChoiceField)."""

    def _check_values(self, value):
        try:
            return super()._check_values(value)
        except ValidationError as error:
            if error.code in {"invalid_choice", "invalid_pk_value"}:
                raise Http404(_("Not found.")) from None
            raise


class BulkLeadsForm(forms.Form):
    """An action on the leads ticked in the list: move them to a status, or (a supervisor)
    give them to another manager."""

    leads = VisibleMultipleChoiceField(queryset=Lead.objects.none())
    status = ModelChoiceField(
        label=_("Move to"),
        queryset=LeadStatus.objects.all(),
        to_field_name="code",
        required=False,
        empty_label=_("Status…"),
    )
    reason = forms.CharField(label=_("Reason"), required=False, max_length=200)
    responsible = PersonChoiceField(
        label=_("Give to"),
        queryset=get_user_model().objects.none(),
        required=False,
        empty_label=_("Manager…"),
    )

    def __init__(self, data, *, user):
        super().__init__(data)
        self.fields["leads"].queryset = leads_visible_to(user)
        if can_see_all_leads(user):
            self.fields["responsible"].queryset = people_to_assign(user)
        else:
            del self.fields["responsible"]

    def clean(self):
        data = super().clean()
        if not data.get("status") and not data.get("responsible"):
            raise ValidationError(_("Choose a status or a manager."))
        return data


class LeadForm(forms.ModelForm):
    """A lead's details, new or edited, with the model's own validation. Its status changes
    only through the status buttons (crm.services.change_status)."""

    save_anyway = forms.BooleanField(
        label=_("Save anyway: I know another lead has this email or phone"), required=False
    )

    class Meta:
        model = Lead
        fields = [
            "first_name",
            "last_name",
            "title",
            "company",
            "email",
            "phone_raw",
            "source",
            "language",
            "time_zone",
            "do_not_email",
            "responsible",
        ]
        formfield_callback = selects_for_choices

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.duplicates = []
        responsible = self.fields["responsible"]
        if can_see_all_leads(user):
            # A lead with a manager keeps one: "Nobody" is offered only while it has none.
            assigned = self.instance.responsible_id is not None
            self.fields["responsible"] = PersonChoiceField(
                label=responsible.label,
                queryset=people_to_assign(user),
                required=assigned,
                empty_label=None if assigned else _("Nobody"),
            )
        else:
            del self.fields["responsible"]

    def _post_clean(self):
        # The model's validation (run here by ModelForm) turns phone_raw into the E.164 phone
        # that duplicates are found by, so they are looked for after it.
        super()._post_clean()
        if self.errors:
            return
        if not self.instance._state.adding and not {"email", "phone_raw"} & set(self.changed_data):
            return  # an edit that keeps the email and phone: looked at when they were saved
        self.duplicates = list(duplicates_of(self.instance))
        if self.duplicates and not self.cleaned_data.get("save_anyway"):
            self.add_error(
                None,
                ValidationError(
                    _("Another lead already has this email or phone: look at it before saving."),
                    code="duplicate",
                ),
            )


class NoteTextForm(forms.Form):
    text = forms.CharField(
        label=_("Note"), max_length=500, widget=forms.Textarea(attrs={"rows": 3})
    )


class TaskForm(forms.Form):
    """A next step on a lead. A preset (`when`) sets the due time in one click; otherwise
    `due_at` is typed. A manager assigns only herself; a supervisor, the lead's manager or a
    supervisor (people who can see the lead)."""

    title = forms.CharField(label=_("What to do"), max_length=200, initial=_("Call back"))
    due_at = forms.DateTimeField(
        label=_("Due"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
    )
    when = ChoiceField(
        required=False,
        choices=[
            ("today", _("Today 17:00")),
            ("tomorrow", _("Tomorrow 10:00")),
            ("in_3_days", _("In 3 days")),
            ("next_week", _("Next week")),
        ],
    )
    assigned_to = PersonChoiceField(
        label=_("For"), queryset=get_user_model().objects.none(), required=False, empty_label=None
    )

    def __init__(self, data=None, *, user, lead):
        super().__init__(data)
        self.user = user
        if can_see_all_leads(user):
            self.fields["assigned_to"].queryset = people_to_assign(user).filter(
                Q(pk=lead.responsible_id) | Q(groups__name=SUPERVISORS_GROUP) | Q(pk=user.pk)
            )
            self.fields["assigned_to"].initial = lead.responsible_id or user.pk
        else:
            del self.fields["assigned_to"]

    def clean(self):
        data = super().clean()
        if data.get("when"):
            data["due_at"] = preset_due(data["when"])
        elif not data.get("due_at"):
            raise ValidationError(_("Choose when it is due."))
        if "assigned_to" not in self.fields or not data.get("assigned_to"):
            data["assigned_to"] = self.user
        return data


def preset_due(preset: str):
    """The due time a preset button means, in the user's time zone."""
    now = timezone.localtime()
    at_ten = now.replace(hour=10, minute=0, second=0, microsecond=0)
    if preset == "today":
        return max(now.replace(hour=17, minute=0, second=0, microsecond=0), now)
    days = {"tomorrow": 1, "in_3_days": 3, "next_week": 7}[preset]
    return at_ten + timedelta(days=days)


def share_choices(first: ModelChoiceField, *others: ModelChoiceField) -> None:
    """Read the choices of model choice fields that offer the same rows once, not once each
    (the lead list's filter and its bulk action both list the statuses, say)."""
    # Not list(): it asks the iterator's length first, and that is a COUNT query of its own.
    choices = [*iter(first.choices)]
    first.widget.choices = choices
    for other in others:
        own_empty = [("", other.empty_label)] if other.empty_label is not None else []
        other.widget.choices = own_empty + [choice for choice in choices if choice[0] != ""]


class MySettingsForm(forms.ModelForm):
    """What a user sets for themselves: their language, time zone, phone and signature (who
    they are and their PBX extension are a supervisor's to set, in the admin)."""

    class Meta:
        model = Profile
        fields = ["language", "time_zone", "phone", "signature"]
        formfield_callback = selects_for_choices
        widgets = {"signature": forms.Textarea(attrs={"rows": 4})}
        help_texts = {
            "language": _("The language of your pages and of your notifications."),
            "time_zone": _("Every time in the CRM is shown to you in it."),
            "phone": _("Your own number, for colleagues."),
            "signature": _("Ends the emails sent in your name."),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = [("", _("The site's default"))] + [
            choice for choice in self.fields["language"].choices if choice[0]
        ]
        self.fields["time_zone"].widget = Select(
            choices=time_zone_choices(current=self.instance.time_zone)
        )

    def clean(self):
        # Every field is optional, so a field left out of the request would be saved empty: a
        # form sent without one (not by this page) changes nothing.
        if any(name not in self.data for name in self.fields):
            raise ValidationError(_("The form arrived incomplete: nothing was saved."))
        return super().clean()
