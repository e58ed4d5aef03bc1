"""Public pages: what a customer opens from a message, without a login."""
