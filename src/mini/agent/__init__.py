"""The agent loop: an LLM that calls tools (a built-in document search plus yours), concurrently per turn."""

from mini.agent.loop import AgentConfig, AgentRun, SearchFunction
from mini.agent.tools import FunctionTool, function_tool

__all__ = ["AgentConfig", "AgentRun", "FunctionTool", "SearchFunction", "function_tool"]
