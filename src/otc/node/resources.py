"""The peer process's own operating-system resources."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("otc.node")
FD_CEILING = 1 << 20  # where the hard limit is "unlimited", ask for this many (macOS refuses infinity)


def raise_fd_limit() -> int:
    """Raise the soft limit on open descriptors to the hard limit and return it.

    Every connection costs a descriptor; Debian's soft default (1,024) let 1,100 idle sockets on the
    control API leave the trader unable to cancel. The hard limit is what the administrator allows; the
    RPC server and the control API each take only a share of it (core/limits.py), so a flood of one port
    leaves room for the other and for the peer's own outgoing connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, exc)
    return soft
