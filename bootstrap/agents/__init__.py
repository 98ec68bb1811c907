"""The agent layer: agent specs from TOML, transports, a concurrent runtime, LLM providers.

Consumes an agents TOML file (see `registry`) and produces agent responses
(`AgentResponse`) through `AgentRuntime.submit`; independent of the Prism kernel.
"""

from .models import AgentRequest, AgentResponse, AgentSpec, AgentSpecError, LLMProviderSpec
from .providers import (
    LLMProvider,
    LLMProviderError,
    MockProvider,
    OpenAICompatibleProvider,
    ProviderStream,
    build_providers,
    stream_completion,
)
from .registry import Registry, RegistryError, SelectionError, UnknownAgentError, load_registry
from .runtime import AgentRuntime

__all__ = [
    "AgentRequest",
    "AgentResponse",
    "AgentRuntime",
    "AgentSpec",
    "AgentSpecError",
    "LLMProvider",
    "LLMProviderError",
    "LLMProviderSpec",
    "MockProvider",
    "OpenAICompatibleProvider",
    "ProviderStream",
    "Registry",
    "RegistryError",
    "SelectionError",
    "UnknownAgentError",
    "build_providers",
    "load_registry",
    "stream_completion",
]
