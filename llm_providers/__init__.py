"""llm_providers: one dependable way to call Gemini, OpenRouter and Hugging Face from Django."""
