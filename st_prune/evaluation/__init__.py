"""MTEB evaluation, one module per idea, each importing only modules listed before it: task_files (the local task
file format, without mteb), tasks (task sets, the paper's tasks and instructions), local_tasks (JSONL files as
tasks), prompts (instructions as prompts), model_meta (the model's identity and ModelMeta), results (reports),
evaluate (running mteb) and submission (leaderboard files)."""
