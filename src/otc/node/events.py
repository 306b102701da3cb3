"""What a peer tells its local watchers (the control API's event stream): one dict per event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Listeners:
    """Hooks for the API's live stream; each gets an event dict."""

    callbacks: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    def emit(self, event: dict[str, Any]) -> None:
        for cb in list(self.callbacks):
            cb(event)
