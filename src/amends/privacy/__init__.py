"""Privacy: a customer's data on request (export, erasure) and how long personal data is kept (retention).

Reads and changes the rows of every stage, so it sits above them; nothing below imports it.
"""

from amends.privacy.customers import ERASED, FORGOTTEN_PREFIX, Forgotten, export_customer, forget_customer

__all__ = ["ERASED", "FORGOTTEN_PREFIX", "Forgotten", "export_customer", "forget_customer"]
