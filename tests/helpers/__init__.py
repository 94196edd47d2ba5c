"""Helpers shared by tests (fixtures stay in conftest.py; nothing is imported from one)."""
