"""The "databases" logger and the `extra=` dicts its records carry (names kept from 0.9)."""

import logging
import typing

logger = logging.getLogger("databases")

# Log handlers that colour their output (uvicorn's, for one) read `color_message`.
LOG_EXTRA: dict[str, typing.Any] = {"color_message": "Query: %s Args: %s"}
CONNECT_EXTRA: dict[str, typing.Any] = {"color_message": "Connected to database %s"}
DISCONNECT_EXTRA: dict[str, typing.Any] = {"color_message": "Disconnected from database %s"}
# `echo=True`: a statement that ran, and one that failed.
ECHO_EXTRA: dict[str, typing.Any] = {"color_message": "%s [%s, %.3f ms]%s"}
ECHO_ERROR_EXTRA: dict[str, typing.Any] = {"color_message": "%s [%s, failed after %.3f ms: %s]%s"}
