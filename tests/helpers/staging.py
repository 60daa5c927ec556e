"""The script of an export that is killed half-way."""

from __future__ import annotations

import textwrap

KILLED_EXPORT = textwrap.dedent(
    """
    import os, signal, sys
    import st_prune.model.export as export
    from st_prune import encoder_from_llm

    model = encoder_from_llm(sys.argv[1], layers=1)
    def killed(*args, **kwargs):  # the weights are written: die as an OOM kill or `kill -9` would
        os.kill(os.getpid(), signal.SIGKILL)
    export._rewrite_legacy_configs = killed
    export.export_model(model, sys.argv[2])
    """
)
