"""Calls: PBX events in, Call rows and the lead's timeline out, and call control from the CRM.

    events.py      CallEventData, the event types and the sources of call events
    services.py    every write on calls: folding events into Call rows, matching the lead, the
                   timeline entry, the missed-call notice, choosing the lead of a shared
                   number, the CRM's own outbound calls
    agents.py      the writes on a manager's agent state (calls move it; the away switch)
    selectors.py   the reads: who may see a call, who may control one, the screen pop, the
                   agent state
    reports.py     the call report per manager and day, its totals and CSV
    webhook.py     the generic webhook's requests: reading, verifying, parsing, keeping what
                   could not be used
    signatures.py  the webhook's HMAC signatures
    pbx.py         call control: click-to-call, hang up, transfer, the away switch at the PBX
    connectors.py  how each kind of PBX is told (Asterisk AMI, a click-to-call HTTP endpoint)
    pbx_errors.py  what call control can fail with, in words for the manager
    ami/           Asterisk's manager interface: protocol.py (the wire format and its errors),
                   client.py (a short connection for one action), listener.py (the reconnecting
                   event reader), tracking.py (AMI events as call events), pump.py (from the
                   listener to services.apply_event)

The views are in `telephony.views`, the admin in `telephony.admin`.
"""
