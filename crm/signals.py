from django.dispatch import Signal

# Sent after the transaction that changed a lead's status commits.
# Arguments: lead_id, old_code (None for a new lead), new_code, by (a user or None), reason.
lead_status_changed = Signal()
