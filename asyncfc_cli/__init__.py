"""asyncfc: an agent runner with future-based asynchronous function calling."""

__version__ = "0.1.0"
