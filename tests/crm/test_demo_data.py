from django.core.management import call_command

from crm.models import Lead, LeadStatus


def test_demo_data_loads_once_with_leads_in_every_status(db, capsys):
    call_command("load_demo")
    call_command("load_demo")

    assert Lead.objects.count() == 6
    assert set(Lead.objects.values_list("status__code", flat=True)) == set(
        LeadStatus.objects.values_list("code", flat=True)
    )
    output = capsys.readouterr().out
    assert "Demo data is already loaded." in output
    assert "login admin / demo" in output
