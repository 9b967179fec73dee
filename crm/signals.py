from django.dispatch import Signal

# Sent after the transaction that changed a lead's status commits.
# Arguments: lead_id, old_code (None for a new lead), new_code, by (a user or None),
# cause (a crm.models.StatusChangeCause) and reason (the person's own words, or "").
lead_status_changed = Signal()

# Sent inside the transaction that gives a lead to another manager, with the lead's row locked,
# so that what is copied from the lead (its manager) moves with it.
# Arguments: lead_id and manager_id (the new responsible manager's user id).
lead_reassigned = Signal()
