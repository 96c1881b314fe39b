"""Stage 7, hub: the Hugging Face-compatible server (``zoo serve``: starlette, served by uvicorn).

``served`` is what a server serves (uploaded repos from ``zoo.store``, cached cards' repos, files pulled
through from an upstream), ``blobs`` where their bytes live (the cache, or S3 by presigned URL),
``read`` and ``write`` the two sides of the protocol (docs/internals.md, "The hub protocol as zoo serves it"),
``admin`` branches, tags and repo settings, ``threads`` discussions and pull requests, ``cards`` a
README's metadata, ``auth`` who may read and write what, ``catalog`` what the pages say of each repo
(figures and their sources, lineage), ``pages`` the HTML a person browses (``templates/``,
``static/``), ``app`` the routes.

May import: ``zoo.weights``, ``zoo.store``, ``zoo.cards``, ``zoo.util``, the top modules and, of
``zoo.compare``, its stored measurements (JSON files); never the model or transfer stages, nor any
module that loads torch (a server holds no torch: tests/test_layout.py).
"""

from importlib.util import find_spec

from zoo.errors import MissingExtra

if any(find_spec(m) is None for m in ("starlette", "uvicorn", "yaml", "jinja2", "markdown_it", "nh3")):  # once for all
    raise MissingExtra("zoo serve", "starlette, uvicorn, pyyaml, jinja2, markdown-it-py and nh3", "serve")
