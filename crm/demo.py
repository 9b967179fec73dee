"""Demo data for a first look: a few users in each group and leads in every status.

The users' password is published (`demo`), so they get it only in development; loaded anywhere
else they have no usable password until someone sets one (`manage.py changepassword`)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from crm import services
from crm.models import Lead, LeadStatus, Profile

DEMO_PASSWORD = "demo"  # noqa: S105 - published on purpose: development only

USERS = [
    # username, first, last, group, extension
    ("admin", "Анна", "Админова", None, ""),
    ("olga", "Ольга", "Руководитель", "Supervisors", "100"),
    ("valery", "Валерий", "Продажин", "Managers", "101"),
    ("maria", "Мария", "Звонкова", "Managers", "102"),
]

LEADS = [
    # title, first, last, email, phone, company, status, responsible
    (
        "Сайт для пекарни",
        "Иван",
        "Петров",
        "ivan@bakery.example",
        "8 (916) 123-45-67",
        "Пекарня №1",
        "new",
        "valery",
    ),
    (
        "CRM для автосервиса",
        "Пётр",
        "Сидоров",
        "petr@autoservice.example",
        "+7 916 765-43-21",
        "АвтоПлюс",
        "in_progress",
        "valery",
    ),
    (
        "Мобильное приложение",
        "Елена",
        "Кузнецова",
        "elena@shop.example",
        "",
        "Магазин Уют",
        "nurturing",
        "valery",
    ),
    (
        "Корпоративный портал",
        "John",
        "Smith",
        "john@acme.example",
        "+1 212 555 0100",
        "ACME",
        "nurturing",
        "maria",
    ),
    (
        "Интернет-магазин",
        "Сергей",
        "Иванов",
        "sergey@store.example",
        "+7 495 123-45-67",
        "СтройМаркет",
        "converted",
        "maria",
    ),
    ("Реклама в метро", "", "", "spam@junk.example", "", "", "junk", "maria"),
]


def demo_data_exists() -> bool:
    return get_user_model().objects.filter(username="admin").exists()


@transaction.atomic
def load_demo_data(*, password: str | None) -> None:
    """Every demo user gets `password`; None: no usable password."""
    User = get_user_model()
    users = {}
    for username, first, last, group, extension in USERS:
        user = User.objects.create_user(
            username,
            email=f"{username}@crm.example",
            password=password,
            first_name=first,
            last_name=last,
            is_staff=True,
            is_superuser=group is None,
        )
        if group:
            user.groups.add(Group.objects.get(name=group))
        Profile.objects.create(
            user=user,
            display_name=f"{first} {last}",
            signature=f"С уважением,\n{first} {last}\nОтдел продаж",
            extension=extension,
        )
        users[username] = user
    statuses = {status.code: status for status in LeadStatus.objects.all()}
    for title, first, last, email, phone, company, status, responsible in LEADS:
        lead = Lead(
            title=title,
            first_name=first,
            last_name=last,
            email=email,
            phone_raw=phone,
            company=company,
            source="demo",
            status=statuses[status],
            responsible=users[responsible],
        )
        services.create_lead(lead, by=users[responsible])


def remove_published_password() -> list[str]:
    """Demo users still on the published password lose it (no usable password); returns who."""
    demo_users = get_user_model().objects.filter(username__in=[username for username, *_ in USERS])
    removed = []
    for user in demo_users:
        if user.check_password(DEMO_PASSWORD):
            user.set_unusable_password()
            user.save(update_fields=["password"])
            removed.append(user.username)
    return removed
