"""The simulated model: follows a task's ``[sim]`` plan behind a local
OpenAI-compatible endpoint, so the runner can be seen and tested without an
API key. Stdlib and pydantic only; litellm is never imported here."""

from .engine import Reply, decide, render
from .plan import SimFinal, SimPlan, SimStep
from .server import SimServer, serve

__all__ = ["Reply", "SimFinal", "SimPlan", "SimServer", "SimStep", "decide", "render", "serve"]
