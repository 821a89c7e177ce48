"""Answering: prompts, the retrieve-then-generate pipeline, and the chat-turn service."""
