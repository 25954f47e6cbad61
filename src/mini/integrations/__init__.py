"""Adapters to the frameworks users already run: LangChain, LlamaIndex, MCP (each behind its optional extra)."""
