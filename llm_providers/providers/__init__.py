"""Provider clients: pure HTTP, no database.

``base`` holds what every provider shares (retries, error mapping, streaming, structured
output), ``http`` the transport under it (one pooled ``requests.Session``), ``sse`` the stream
reader, ``openai_compat`` the OpenAI chat-completions dialect, ``custom`` the classes made from
data for custom OpenAI-compatible providers (SPEC §12.1), and each other module one provider,
saying only what is particular to it. The registry (``llm_providers.registry``) lists them.
"""
