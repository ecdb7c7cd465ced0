"""smproto's typed session errors as the exceptions LiveKit Agents understands.

LiveKit's base classes retry an :class:`~livekit.agents.APIError` whose ``retryable`` is
true and give up on one whose ``retryable`` is false, so each error keeps the
retryability smproto worked out for it.
"""

from __future__ import annotations

from livekit.agents import APIConnectionError, APIError, APIStatusError, APITimeoutError

from smproto.session import (
    AuthenticationError,
    ConnectionFailed,
    ConnectionLost,
    HandshakeRejected,
    ProtocolViolation,
    SessionError,
    SessionTimeout,
    TranscriptionError,
)

__all__ = ["SpeechmaticsError", "to_api_error"]


class SpeechmaticsError(APIStatusError):
    """The Speechmatics server ended the session with an ``Error`` message.

    :attr:`error_type` is the server's type (``"invalid_config"``, ``"quota_exceeded"``,
    ``"not_authorised"``, ...) and :attr:`reason` its explanation; ``retryable`` is true for
    the types after which a new session may succeed (quota, job and internal errors).
    ``status_code`` is 401 for ``not_authorised`` and -1 otherwise (there is no HTTP status
    in the middle of a WebSocket session); ``body`` is ``{"type": ..., "reason": ...}``.
    """

    def __init__(
        self, error_type: str, reason: str, *, retryable: bool, status_code: int = -1
    ) -> None:
        text = f"Speechmatics error {error_type}" + (f": {reason}" if reason else "")
        super().__init__(
            text,
            status_code=status_code,
            body={"type": error_type, "reason": reason},
            retryable=retryable,
        )
        self.error_type = error_type
        self.reason = reason


def to_api_error(error: SessionError) -> APIError:
    """The LiveKit exception that reports ``error`` (raise it ``from error``). The notes
    the session added (why it did not retry) end its message: LiveKit logs only that."""
    api_error = _api_error(error)
    notes = getattr(error, "__notes__", None)
    if notes:
        api_error.message = f"{api_error.message} ({'; '.join(notes)})"
        api_error.args = (api_error.message,)
    return api_error


def _api_error(error: SessionError) -> APIError:
    message = str(error)
    if isinstance(error, TranscriptionError):
        return SpeechmaticsError(error.type, error.reason, retryable=error.retryable)
    if isinstance(error, AuthenticationError):
        if error.status is not None:  # the handshake or the key endpoint said 401/403
            return APIStatusError(message, status_code=error.status, retryable=False)
        return SpeechmaticsError("not_authorised", message, retryable=False, status_code=401)
    if isinstance(error, HandshakeRejected):
        return APIStatusError(message, status_code=error.status, retryable=error.retryable)
    if isinstance(error, SessionTimeout):
        return APITimeoutError(message, retryable=error.retryable)
    if isinstance(error, ConnectionFailed | ConnectionLost):
        return APIConnectionError(message, retryable=error.retryable)
    if isinstance(error, ProtocolViolation):
        return APIError(message, retryable=False)
    return APIError(message, retryable=error.retryable)
