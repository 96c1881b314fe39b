"""A Hugging Face-compatible hub over zoo's cache (starlette, served by uvicorn).

``repos`` turns the cache index into repos; ``read`` answers the read side of the protocol that
huggingface_hub and timm speak (see ``../shared/docs/hub-protocol.md``); ``app`` assembles them.
"""
