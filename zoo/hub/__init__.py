"""Stage 7, hub: the Hugging Face-compatible server (``zoo serve``: starlette, served by uvicorn).

``served`` is what a server serves (uploaded repos from ``zoo.store``, cached cards' repos, files pulled
through from an upstream), ``blobs`` where their bytes live (the cache, or S3 by presigned URL),
``read`` and ``write`` the two sides of the protocol (docs/internals.md, "The hub protocol as zoo serves it"),
``admin`` branches, tags and repo settings, ``threads`` discussions and pull requests, ``cards`` a
README's metadata, ``auth`` who may read and write what, ``app`` the routes.

May import: ``zoo.weights``, ``zoo.store``, ``zoo.cards``, ``zoo.util`` and the top modules; never the
model, transfer or compare stages (a server holds no torch).
"""

from importlib.util import find_spec

from zoo.errors import MissingExtra

if find_spec("starlette") is None or find_spec("uvicorn") is None or find_spec("yaml") is None:  # once for every module
    raise MissingExtra("zoo serve", "starlette, uvicorn and pyyaml", "serve")
