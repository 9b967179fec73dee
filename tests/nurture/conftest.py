import pytest

from nurture.models import Sequence


@pytest.fixture
def default_sequence(db):
    return Sequence.objects.get(name="Дожимаем лида / Lead nurturing")
