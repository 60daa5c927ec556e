"""A requested device must exist before any model is loaded onto it.

torch reports ``--device cuda`` on a machine without CUDA as ``AssertionError: Torch not compiled with CUDA
enabled`` (or a ``RuntimeError`` from deep inside ``.to()``), after the data and the model were loaded.
"""

from __future__ import annotations

from st_prune.errors import StPruneError

# device type -> (is it available, how many) as torch answers it; types not listed are left to torch.
_BACKENDS = {
    "cuda": lambda torch: (torch.cuda.is_available(), torch.cuda.device_count()),
    "mps": lambda torch: (torch.backends.mps.is_available(), 1),
    "xpu": lambda torch: (
        hasattr(torch, "xpu") and torch.xpu.is_available(),
        torch.xpu.device_count() if hasattr(torch, "xpu") else 0,
    ),
}


def check_device(device: str | None, flag: str = "--device") -> None:
    """Refuse a device string torch cannot parse, or a GPU this machine does not have, in one line."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise StPruneError(f"{flag} {device!r} is not a torch device; use e.g. cpu, cuda, cuda:1 or mps") from None
    backend = _BACKENDS.get(parsed.type)
    if backend is None:
        return
    available, count = backend(torch)
    if not available:
        build = f"torch {torch.__version__}" + (
            " without CUDA" if parsed.type == "cuda" and not torch.version.cuda else ""
        )
        raise StPruneError(
            f"{flag} {device}: no {parsed.type.upper()} device is available on this machine ({build}); "
            f"pass {flag} cpu or leave {flag} out"
        )
    if parsed.index is not None and parsed.index >= count:
        raise StPruneError(
            f"{flag} {device}: this machine has {count} {parsed.type.upper()} device(s), numbered from 0; "
            f"pass {flag} {parsed.type}:0"
        )
