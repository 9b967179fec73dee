"""From the AMI listener to the database: `CallEventPump` is the listener's `on_event`; it
tracks each AMI event in the event loop and has `CallEventStore` apply the call events that come
of it with `services.apply_event`, in one worker thread (the ORM is synchronous)."""

import asyncio
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connections

from telephony.calls.ami.tracking import MAX_TRACKED_CALLS, CallTracker, TrackedEvent
from telephony.calls.events import AMI, CRM, CRM_CALL_PREFIX
from telephony.calls.services import apply_event
from telephony.models import Call

logger = logging.getLogger(__name__)


class CallEventStore:
    """Applies tracked events to the database; used from one worker thread only."""

    def __init__(self):
        self._sources: OrderedDict[str, str] = OrderedDict()

    def apply(self, tracked: TrackedEvent) -> Call | None:
        try:
            return self._apply(tracked)
        except Exception:
            logger.exception("AMI event %s could not be applied", tracked.event.event_id)
            return None

    def _apply(self, tracked: TrackedEvent) -> Call | None:
        event = tracked.event
        source = self._source_of(event.call_id, tracked.first_leg_seen)
        if source is None:
            logger.debug("AMI: ignoring %s of a call that started before we listened", event.type)
            return None
        # A call the CRM placed (it carries CRM_LEAD_ID) is about that lead, even when its
        # number is shared by several leads.
        return apply_event(source, event, lead_id=tracked.crm_lead_id)

    def _source_of(self, call_id: str, first_leg_seen: bool) -> str | None:
        """Calls placed from the CRM go on their CRM row; a call whose start we did not see
        is followed only when it is already known."""
        if call_id in self._sources:
            return self._sources[call_id]
        calls = Call.objects.filter(call_id=call_id)
        if call_id.startswith(CRM_CALL_PREFIX) and calls.filter(source=CRM).exists():
            source = CRM
        elif first_leg_seen or calls.filter(source=AMI).exists():
            source = AMI
        else:
            return None
        self._sources[call_id] = source
        while len(self._sources) > MAX_TRACKED_CALLS:
            self._sources.popitem(last=False)
        return source


class CallEventPump:
    """The listener's `on_event`: track in the event loop, store in one worker thread."""

    def __init__(self):
        self.tracker = CallTracker()
        self.store = CallEventStore()
        self.applied = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ami-db")

    async def __call__(self, message: dict) -> None:
        tracked = self.tracker.feed(message)
        if tracked is None:
            return
        loop = asyncio.get_running_loop()
        call = await loop.run_in_executor(self._executor, self._apply, tracked)
        if call is not None:
            self.applied += 1

    def _apply(self, tracked: TrackedEvent) -> Call | None:
        close_old_connections()  # a long-running process: drop connections that went stale
        return self.store.apply(tracked)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, connections.close_all)
        self._executor.shutdown(wait=True)
