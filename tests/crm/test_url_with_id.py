import pytest
from django.urls import clear_script_prefix, reverse, set_script_prefix

from crm.templatetags.crm_workspace import url_with_id


@pytest.mark.parametrize(
    "name", ["crm:lead_detail", "crm:pipeline_move", "crm:notification_open", "crm:task_done"]
)
@pytest.mark.parametrize("pk", [1, 42, 9081726])
def test_it_is_the_url_reverse_gives(name, pk):
    assert url_with_id(pk, name) == reverse(name, args=[pk])


def test_it_follows_the_script_prefix():
    set_script_prefix("/crm/")
    try:
        assert (
            url_with_id(7, "crm:lead_detail")
            == "/crm/leads/7/"
            == reverse("crm:lead_detail", args=[7])
        )
    finally:
        clear_script_prefix()
    assert url_with_id(7, "crm:lead_detail") == "/leads/7/"


def test_an_id_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError):
        url_with_id("7/../../admin", "crm:lead_detail")
