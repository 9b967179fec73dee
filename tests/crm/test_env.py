"""Settings read from the environment: a value of the wrong type stops the process, by name."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from crm.env import env_bool, env_int


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), (" Yes ", True), ("ON", True), ("0", False), ("off", False)],
)
def test_a_boolean_is_read_in_any_usual_spelling(monkeypatch, value, expected):
    monkeypatch.setenv("DEBUG", value)

    assert env_bool("DEBUG", not expected) is expected


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_boolean_is_the_default(monkeypatch, value):
    monkeypatch.setenv("EMAIL_USE_TLS", value)

    assert env_bool("EMAIL_USE_TLS", True) is True


@pytest.mark.parametrize("value", ["ture", "flase", "2", "y"])
def test_a_misspelt_boolean_is_refused_with_the_variables_name(monkeypatch, value):
    monkeypatch.setenv("EMAIL_USE_TLS", value)

    with pytest.raises(ImproperlyConfigured, match="EMAIL_USE_TLS"):
        env_bool("EMAIL_USE_TLS")


def test_a_number_that_is_not_one_is_refused_with_the_variables_name(monkeypatch):
    monkeypatch.setenv("EMAIL_PORT", "25a")

    with pytest.raises(ImproperlyConfigured, match="EMAIL_PORT"):
        env_int("EMAIL_PORT", 25)
