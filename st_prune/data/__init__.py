"""Training data: triplets with their instructions, loaded and validated once, and the paper's E5 mix (echo-data folders)."""
