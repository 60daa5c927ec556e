"""L3Prune: the base model's per-layer contrastive loss in one pass, its small/large picks, their bootstrap confidence and the curve."""
