"""Pages of long lists that count only as far as somebody pages.

Counting every lead of a 100,000-lead CRM for "Page 1 of 4,000" costs more than reading the page
itself. A CappedPaginator counts up to the next multiple of `cap` rows past the page asked for
(10,000 rows: 400 pages of 25) and says "more than 10,000" when there are more; a list smaller
than that, as a manager's own or a filtered one usually is, gets its exact count.
"""

import math

from django.core.paginator import Page, Paginator
from django.utils.functional import cached_property

COUNT_CAP = 10_000


class CappedPaginator(Paginator):
    def __init__(
        self,
        object_list,
        per_page,
        orphans=0,
        allow_empty_first_page=True,
        *,
        wanted_page=1,
        cap: int | None = None,
    ):
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        cap = cap or COUNT_CAP
        self.limit = cap * math.ceil(max(wanted_page, 1) * per_page / cap)

    @cached_property
    def count(self) -> int:
        """The rows up to the limit, and one more when there are more (so the last counted page
        still has a next one)."""
        rows = self.object_list.order_by()
        if rows.query.select_related:  # the joins only read what the rows show
            rows = rows.select_related(None)
        return rows[: self.limit + 1].count()

    @property
    def is_capped(self) -> bool:
        return self.count > self.limit

    @property
    def counted_pages(self) -> int:
        """The whole pages within the counted rows: what "Page N of more than M" says."""
        return self.limit // self.per_page

    def get_elided_page_range(self, number=1, *, on_each_side=3, on_ends=2):
        """Django's page links (the admin's), without a last page where there is none to link:
        capped, the first pages, those around `number`, then "…"."""
        if not self.is_capped:
            yield from super().get_elided_page_range(
                number, on_each_side=on_each_side, on_ends=on_ends
            )
            return
        number = self.validate_number(number)
        if number > on_ends + on_each_side + 1:
            yield from range(1, on_ends + 1)
            yield self.ELLIPSIS
            yield from range(number - on_each_side, number)
        else:
            yield from range(1, number)
        yield from range(number, min(number + on_each_side, self.num_pages) + 1)
        yield self.ELLIPSIS


class ReadAheadPaginator(Paginator):
    """Django's paginator, reading a first page's ids with up to `read_ahead` more (kept in
    `first_ids`, so that its rows can be read by id instead of looking for them a second time):
    a list that ends within them (a search mostly does) is counted by them, not by a pass of
    its own."""

    def __init__(self, *args, read_ahead: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_ahead = read_ahead
        self.first_ids = None

    @cached_property
    def count(self) -> int:
        if self.read_ahead:
            wanted = self.per_page + self.read_ahead
            self.first_ids = list(self.object_list.values_list("pk", flat=True)[:wanted])
            if len(self.first_ids) < wanted:
                return len(self.first_ids)
        return self.object_list.count()


def query_without(query, *names: str) -> str:
    """The request's query string without `names` (for a list's page links: without "page")."""
    query = query.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()


def page_of(rows, number, per_page: int, *, read_ahead: int = 0) -> Page:
    """Page `number` (as a request gives it: anything; not a number means the first, past the
    end the last) of the queryset `rows`, counted no further than needed.

    The first page is read first, with one row more, or `read_ahead` rows more where the rows
    are cheap (ids): when the list ends within them, their number is its count, and no second
    pass over the list counts it (a search usually finds fewer than that)."""
    try:
        wanted = int(number)
    except (TypeError, ValueError):
        wanted = 1
    paginator = CappedPaginator(rows, per_page, wanted_page=wanted)
    if wanted != 1:
        return paginator.get_page(number)
    first = list(rows[: per_page + max(read_ahead, 1)])
    if len(first) < per_page + max(read_ahead, 1):
        paginator.count = len(first)
        paginator.limit = max(paginator.limit, paginator.count)  # counted to its end
    page = paginator.page(1)
    page.object_list = first[:per_page]
    return page
