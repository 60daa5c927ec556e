"""The stages of ``st-prune run``, one file each, in the order data flows through them:

    scan -> prune -> train -> export -> [trim] -> [deploy] -> evaluate -> card -> publish

Each file owns its stage's name, key, record and body (``st_prune.pipeline.stage.Stage``) beside the plain function
that does the work (plain inputs in, a plain record out), so a library user can call that function alone.
"""

from __future__ import annotations

from st_prune.pipeline.stage import Stage
from st_prune.pipeline.stages.card import CARD
from st_prune.pipeline.stages.deploy import DEPLOY
from st_prune.pipeline.stages.evaluate import EVALUATE
from st_prune.pipeline.stages.export import EXPORT
from st_prune.pipeline.stages.prune import PRUNE
from st_prune.pipeline.stages.publish import PUBLISH
from st_prune.pipeline.stages.scan import SCAN
from st_prune.pipeline.stages.train import TRAIN
from st_prune.pipeline.stages.trim import TRIM

PIPELINE: tuple[Stage, ...] = (SCAN, PRUNE, TRAIN, EXPORT, TRIM, DEPLOY, EVALUATE, CARD, PUBLISH)
STAGES: tuple[str, ...] = tuple(stage.name for stage in PIPELINE)
BY_NAME: dict[str, Stage] = {stage.name: stage for stage in PIPELINE}
