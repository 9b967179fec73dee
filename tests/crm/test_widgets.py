"""The workspace's Select writes exactly the HTML of Django's own."""

import pytest
from django import forms

from crm.forms import LeadFilterForm, ModelChoiceField
from crm.models import LeadStatus
from crm.widgets import Select

CHOICES = [
    ("", "Any"),
    ("a", "Plain"),
    ('<b "x">&', 'Escaped <i> & "quoted"'),
    ("Group one", [("g1", "In a group"), ("g2", "Also in it")]),
    (3, "A number"),
]


def both(widget_attrs=None, **render):
    ours = Select(attrs=widget_attrs, choices=CHOICES).render(**render)
    django = forms.Select(attrs=widget_attrs, choices=CHOICES).render(**render)
    return ours, django


@pytest.mark.parametrize("value", [None, "", "a", "g2", 3, '<b "x">&', "missing"])
def test_every_value_selects_as_django_does(value):
    ours, django = both(name="pick", value=value)
    assert ours == django


def test_attributes_as_django_writes_them():
    attrs = {"id": "id_pick", "required": True, "disabled": False, "data-x": '"<>'}
    ours, django = both(widget_attrs={"class": "wide"}, name="pick", value="a", attrs=attrs)
    assert ours == django
    assert " required" in ours and "disabled" not in ours


class OursForm(forms.Form):
    status = ModelChoiceField(queryset=LeadStatus.objects.all(), to_field_name="code")


class DjangosForm(forms.Form):
    status = ModelChoiceField(
        queryset=LeadStatus.objects.all(), to_field_name="code", widget=forms.Select
    )


@pytest.mark.django_db
def test_a_bound_field_with_an_error_renders_as_django_renders_it():
    ours, django = OursForm({"status": "nonsense"}), DjangosForm({"status": "nonsense"})
    assert not ours.is_valid() and not django.is_valid()

    assert 'aria-invalid="true"' in str(ours["status"])
    assert str(ours["status"]) == str(django["status"])


@pytest.mark.django_db
def test_the_lead_lists_selects_are_ours(alice):
    form = LeadFilterForm({}, user=alice)
    assert isinstance(form.fields["status"].widget, Select)
    assert isinstance(form.fields["sort"].widget, Select)


@pytest.mark.django_db
def test_a_lead_forms_fields_with_choices_are_ours_and_the_others_keep_their_widgets(alice):
    from crm.forms import LeadForm, MySettingsForm

    lead_form = LeadForm(user=alice)
    settings_form = MySettingsForm(instance=alice.profile)

    assert isinstance(lead_form.fields["language"].widget, Select)
    assert isinstance(settings_form.fields["language"].widget, Select)
    assert isinstance(lead_form.fields["source"].widget, forms.TextInput)
