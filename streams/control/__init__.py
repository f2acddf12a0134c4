"""Delivery control state: circuits (and, to come, caps and dedupe, table-backed)."""
