"""What each app holds about a lead, for the person's rights: a copy of it all (export) and its
erasure. crm owns the lead and never imports the other apps: each app connects its receivers,
as it adds its panels to the lead's page (crm.lead_page).

- `lead_export` (arguments: lead): each receiver returns {section name: JSON-ready data} of
  what its app holds about the lead.
- `lead_erasure` (arguments: lead, by): each receiver removes or anonymises what its app holds
  about the lead, inside the erasing transaction, before crm erases the lead itself; it returns
  {what: how many} for the audit entry (counts only, never personal data).
"""

from django.dispatch import Signal

lead_export = Signal()
lead_erasure = Signal()
