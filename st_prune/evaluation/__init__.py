"""MTEB evaluation: task sets, instructions, local tasks, model meta, results and leaderboard submission files."""
