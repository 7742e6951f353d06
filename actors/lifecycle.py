"""``SupervisedActor``: one way out for an actor, whether it stopped or crashed.

pykka calls ``on_stop`` after a clean stop and ``on_failure`` (never ``on_stop``) after an
exception escaped a told message. A supervised actor must report both the same way to its
parent, so both lead to ``_exited``, with ``_error`` set to what killed it (None for a stop).
"""

from __future__ import annotations

from types import TracebackType

import pykka

__all__ = ["SupervisedActor"]


class SupervisedActor(pykka.ThreadingActor):
    use_daemon_thread = True  # a run that never returns must not keep the process alive

    _error: BaseException | None = None

    def on_stop(self) -> None:
        self._exited()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._error = exception_value
        self._exited()

    def _exited(self) -> None:
        """Clean up and tell the parent (``_error`` says why, None for a plain stop)."""
        raise NotImplementedError
