"""Placeholder until its issue lands; registers nothing yet."""
