"""A training callback that raises KeyboardInterrupt at a given step, as Ctrl-C does."""

from __future__ import annotations

from transformers import TrainerCallback


class StopAt(TrainerCallback):
    """Ctrl-C after optimizer step ``step`` (after that step's checkpoint, if it is a save step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt
