"""The simulated model: follows a task's ``[sim]`` plan behind a local
endpoint that speaks one provider's wire format (OpenAI chat completions,
Anthropic Messages, Gemini or OpenAI Responses), so the runner can be seen
and tested without an API key. Stdlib and pydantic only; litellm is never
imported here."""

from .engine import Reply, decide
from .plan import SimFault, SimFinal, SimPlan, SimStep
from .render import render
from .server import SimServer, serve

__all__ = ["Reply", "SimFault", "SimFinal", "SimPlan", "SimServer", "SimStep", "decide", "render", "serve"]
