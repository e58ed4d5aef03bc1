"""Recovery: turn incidents and complaints into cases, run their playbook, grant remedies within each
person's authority, and keep a ledger that never pays twice (DESIGN §1 B, C, F; §4)."""
