"""The reference interpreter: the oracle every other backend is checked against."""
