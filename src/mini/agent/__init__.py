"""The agent loop: an LLM that calls tools (a built-in document search plus yours), concurrently per turn."""

from mini.agent.loop import AgentConfig, run_agent
from mini.agent.tools import FunctionTool, function_tool

__all__ = ["AgentConfig", "FunctionTool", "function_tool", "run_agent"]
