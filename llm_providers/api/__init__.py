"""The REST API (SPEC §8), on Django REST framework; mounted at /api/llm/ by the project."""
