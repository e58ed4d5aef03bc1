"""amends: proactive service recovery.

Reads a company's own operational events, notices when a customer was let down, and makes amends
before the customer complains. See docs/architecture.md for the flow of data between the stages.
"""

__version__ = "0.1.0"
