"""Rendering: the Jinja2 environment, email MIME messages, letter PDFs."""
