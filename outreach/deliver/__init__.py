"""Delivery: where rendered messages go (outbox files, SMTP, the letter printer)."""
