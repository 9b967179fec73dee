"""The default sequence (the article's six emails, three working days apart), the beat entry
that dispatches them every minute, and what the two groups may do with nurturing."""

from django.db import migrations

from crm.group_permissions import grant_app_permissions

SIGNATURE = """
--
{{ manager.signature|default:manager.name }}{% if manager.phone %}
{{ manager.phone }}{% endif %}
"""

TEXTS = {
    "ru": {
        "greeting": "{% if lead.first_name %}{{ lead.first_name }}, добрый день!"
        "{% else %}Добрый день!{% endif %}",
        "subject": "Проект «{{ lead.title }}»",
        "questions": [
            "Принято ли решение по проекту «{{ lead.title }}»?",
            "Очень хотим с Вами работать :) Принято ли решение по проекту «{{ lead.title }}»?",
        ],
        "unsubscribe": "Чтобы больше не получать эти письма",
    },
    "en": {
        "greeting": "{% if lead.first_name %}Hello {{ lead.first_name }},"
        "{% else %}Hello,{% endif %}",
        "subject": "Project “{{ lead.title }}”",
        "questions": [
            "Has a decision been made on project “{{ lead.title }}”?",
            "We really want to work with you :) "
            "Has a decision been made on project “{{ lead.title }}”?",
        ],
        "unsubscribe": "To stop these emails",
    },
}


def plain_body(texts, question):
    return (
        f"{texts['greeting']}\n\n{question}\n{SIGNATURE}\n"
        f"{texts['unsubscribe']}: {{{{ unsubscribe_url }}}}\n"
    )


def html_body(texts, question):
    return (
        f"<p>{texts['greeting']}</p>\n<p>{question}</p>\n"
        "<p>--<br>{{ manager.signature|default:manager.name|linebreaksbr }}"
        "{% if manager.phone %}<br>{{ manager.phone }}{% endif %}</p>\n"
        f'<p style="font-size:small;color:#777"><a href="{{{{ unsubscribe_url }}}}">'
        f"{texts['unsubscribe']}</a></p>\n"
    )


def create_default_sequence(apps, schema_editor):
    LeadStatus = apps.get_model("crm", "LeadStatus")
    Sequence = apps.get_model("nurture", "Sequence")
    MessageTemplate = apps.get_model("nurture", "MessageTemplate")
    nurturing = LeadStatus.objects.get(code="nurturing")
    sequence = Sequence.objects.create(
        name="Дожимаем лида / Lead nurturing",
        enrolling_status=nurturing,
        interval_working_days=3,
        max_messages=6,
    )
    for language, texts in TEXTS.items():
        for position, question in enumerate(texts["questions"], start=1):
            MessageTemplate.objects.create(
                sequence=sequence,
                position=position,
                language=language,
                subject=texts["subject"],
                body_text=plain_body(texts, question),
                body_html=html_body(texts, question),
            )

    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.update_or_create(
        name="Nurturing: dispatch due emails",
        defaults={"task": "nurture.tasks.dispatch_due", "interval": every_minute},
    )

    grant_app_permissions(
        apps,
        "nurture",
        [
            "view_sequence",
            "view_messagetemplate",
            "view_enrollment",
            "change_enrollment",
            "view_outboundmessage",
            "view_calendarday",
        ],
    )


def remove_default_sequence(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name="Nurturing: dispatch due emails"
    ).delete()
    apps.get_model("nurture", "Sequence").objects.filter(
        name="Дожимаем лида / Lead nurturing"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("nurture", "0001_initial"),
        ("crm", "0002_statuses_and_groups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_default_sequence, remove_default_sequence)]
