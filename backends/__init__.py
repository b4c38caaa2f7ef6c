"""fedc's backends: ``reference`` (the oracle interpreter) and ``tf``."""
