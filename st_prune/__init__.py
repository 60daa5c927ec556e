"""st_prune: decoder LLMs -> small, fast sentence-transformers encoders (L3Prune, arXiv 2410.14578)."""

from st_prune.errors import StPruneError
from st_prune.export import export_model
from st_prune.l3prune import L3Prune, L3PruneResult
from st_prune.truncated_llm import TruncatedLLM, encoder_from_llm

__all__ = ["L3Prune", "L3PruneResult", "StPruneError", "TruncatedLLM", "encoder_from_llm", "export_model"]
__version__ = "0.1.0"
