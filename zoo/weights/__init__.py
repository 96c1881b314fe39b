"""Stage 3, weights: a card's bytes, verified. The content-addressed cache and its blob writer
(``cache``, ``blobwriter``), where bytes come from (``sources``: hf://, https://, file://, pkg://),
pull / verify / pin (``pull``), lock files (``lockfile``), legacy checkpoints (``convert``) and the
deterministic safetensors writer (``safetensors_writer``), offline bundles (``bundle_manifest``, ``bundle_export``, and ``bundles``: import and mirror) and the
Hugging Face cache layout (``hf_cache``).

Never imports torch at module level (converters import it when they run). May import: ``zoo.errors``,
``zoo.config``, ``zoo.home``, ``zoo.util``, ``zoo.cards``, ``zoo.store``.
"""

from zoo.weights.pull import Expected, attach, ensure, open_weights, pull, pull_uri
from zoo.weights.verify import pin, verify

__all__ = ["Expected", "attach", "ensure", "open_weights", "pin", "pull", "pull_uri", "verify"]
