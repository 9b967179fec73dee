from django.db import migrations

from crm.group_permissions import create_all_permissions

STATUSES = [
    # code, Russian, English, order, kind
    ("new", "Новый", "New", 10, "open"),
    ("in_progress", "В работе", "In progress", 20, "open"),
    ("nurturing", "Дожимаем лида", "Nurturing", 30, "nurturing"),
    ("converted", "Сконвертирован", "Converted", 40, "won"),
    ("junk", "Некачественный лид", "Junk", 50, "lost"),
]

MANAGER_PERMISSIONS = [
    "add_lead",
    "change_lead",
    "view_lead",
    "view_leadstatus",
    "view_activity",
    "add_activity",
    "view_notification",
    "change_notification",
    "view_profile",
]


def create_statuses_and_groups(apps, schema_editor):
    LeadStatus = apps.get_model("crm", "LeadStatus")
    for code, name_ru, name_en, order, kind in STATUSES:
        LeadStatus.objects.update_or_create(
            code=code,
            defaults={"name_ru": name_ru, "name_en": name_en, "order": order, "kind": kind},
        )

    create_all_permissions(apps)

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    crm_permissions = Permission.objects.filter(content_type__app_label="crm")
    managers, _ = Group.objects.get_or_create(name="Managers")
    managers.permissions.add(*crm_permissions.filter(codename__in=MANAGER_PERMISSIONS))
    supervisors, _ = Group.objects.get_or_create(name="Supervisors")
    supervisors.permissions.add(*crm_permissions)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["Managers", "Supervisors"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_statuses_and_groups, remove_groups)]
