"""How templates name people, the same way the code does (crm.models.user_display_name)."""

from django import template

from crm.models import display_name_or_dash

register = template.Library()


@register.filter
def display_name(user) -> str:
    """`{{ user|display_name }}`: the user's display name; "-" for nobody."""
    return display_name_or_dash(user)
