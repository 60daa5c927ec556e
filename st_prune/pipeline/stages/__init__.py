"""The recipe runner's stages, one module each.

Each stage is a function that takes plain inputs (paths, specs, numbers) and returns a plain record (a dict
that is also written to the stage's JSON file); ``st_prune.pipeline.runner.RecipeRunner`` only sequences them and keeps
the markers that let a re-run skip what is done.
"""
