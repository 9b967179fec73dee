import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from crm.models import Activity, Lead


@pytest.mark.parametrize(
    "typed",
    ["8 (916) 123-45-67", "+7 916 1234567", "89161234567", "+7-916-123-45-67", "7 916 123 45 67"],
)
def test_phone_is_stored_in_e164_and_as_typed(make_lead, typed):
    lead = make_lead(phone_raw=typed)

    lead.refresh_from_db()
    assert lead.phone == "+79161234567"
    assert lead.phone_raw == typed


def test_email_is_stored_lower_case(make_lead):
    lead = make_lead(email="  Ivan.Petrov@Example.COM ")

    lead.refresh_from_db()
    assert lead.email == "ivan.petrov@example.com"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "not-an-email", "Enter a valid email address."),
        ("phone_raw", "12345", "is not a valid phone number"),
        ("phone_raw", "call me maybe", "is not a valid phone number"),
        ("time_zone", "Mars/Olympus", "Unknown time zone"),
    ],
)
def test_invalid_contact_data_is_refused_and_nothing_is_saved(make_lead, field, value, message):
    with pytest.raises(ValidationError) as refused:
        make_lead(**{field: value})

    assert message in " ".join(refused.value.message_dict[field])
    assert not Lead.objects.exists()


def test_a_plain_save_validates_too(make_lead):
    lead = make_lead()
    lead.phone_raw = "000"

    with pytest.raises(ValidationError):
        lead.save()

    lead.refresh_from_db()
    assert lead.phone_raw == ""


def test_full_name_joins_what_is_there(make_lead):
    assert make_lead(first_name="Ivan", last_name="").full_name == "Ivan"


def test_status_names_follow_the_active_language(status, settings):
    with translation.override("ru"):
        assert status("nurturing").name == "Дожимаем лида"
    with translation.override("en"):
        assert status("nurturing").name == "Nurturing"


@pytest.mark.parametrize("language", ["ru", "en"])
def test_a_kind_label_is_what_django_displays(language):
    with translation.override(language):
        for kind in [*Activity.Kind.values, "retired_kind"]:
            entry = Activity(kind=kind)
            assert str(entry.kind_label) == str(entry.get_kind_display())
