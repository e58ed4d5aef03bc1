"""Outreach: templates, channels, the outbox, the contact policy (DESIGN §4 Message)."""
