"""Feedback: asking about every interaction, listening to what customers write (triage, routing), and
answering every one of them within the SLA (docs/feedback.md)."""
