"""The audit trail: every admin action, written in the transaction that makes the change."""
