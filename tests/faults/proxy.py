"""A loopback TCP proxy that breaks connections on demand.

It runs in a thread of its own with plain non-blocking sockets and `select`, so it serves
whatever event loop (or none) the test runs. Between a client and a target server it
forwards bytes both ways until told otherwise:

- `cut()` closes every current connection (both ends; with `reset=True` as a TCP reset);
- `stall()` stops forwarding bytes (connections stay open) until `resume()`;
- `blackhole()` accepts new connections but never connects them anywhere nor answers,
  until `heal()`, which also resumes a stall.

Every control call waits at most `CONTROL_TIMEOUT` for the proxy thread to carry it out.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import struct
import threading
import typing

__all__ = ["CONTROL_TIMEOUT", "TcpProxy"]

# Seconds a control call waits for the proxy thread, and the thread for its target.
CONTROL_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
# Bytes buffered per direction before the proxy stops reading from the sender.
BUFFER_LIMIT = 256 * 1024
# Seconds between two looks at the control queue when nothing happens.
TICK = 0.2


class _Pipe:
    """One direction of a proxied connection: bytes read from `source`, to write to `sink`."""

    __slots__ = ("buffer", "eof", "shut", "sink", "source")

    def __init__(self, source: socket.socket, sink: socket.socket) -> None:
        self.source = source
        self.sink = sink
        self.buffer = bytearray()
        self.eof = False  # the source sent its last byte
        self.shut = False  # and the sink was told so


class _Pair:
    """A client connection and the proxy's connection to the target for it."""

    __slots__ = ("client", "pipes", "upstream")

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.pipes = (_Pipe(client, upstream), _Pipe(upstream, client))

    @property
    def done(self) -> bool:
        return all(pipe.shut for pipe in self.pipes)


def _close(sock: socket.socket, reset: bool = False) -> None:
    with contextlib.suppress(OSError):
        if reset:
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class TcpProxy:
    """Listens on `host:port` (a free loopback port) and forwards to `target`."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.host: str = host
        self.port: int = self._listener.getsockname()[1]
        # Control calls, run by the proxy thread; the waker interrupts its select().
        self._calls: collections.deque[tuple[typing.Callable[[], None], threading.Event]] = (
            collections.deque()
        )
        self._waker, self._wakee = socket.socketpair()
        self._wakee.setblocking(False)
        self._pairs: list[_Pair] = []
        self._held: list[socket.socket] = []  # black-holed client connections
        self._stalled = False
        self._blackholed = False
        self._closed = False
        # Connections accepted since the start, black-holed ones included.
        self.accepted = 0
        self._thread = threading.Thread(
            target=self._serve, name=f"TcpProxy:{self.port}->{target_port}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"<TcpProxy {self.host}:{self.port} -> {self.target[0]}:{self.target[1]}>"

    # -- control (any thread) -------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections currently forwarded (black-holed ones not counted)."""
        return len(self._pairs)

    def cut(self, reset: bool = False) -> int:
        """Close every current connection, black-holed ones too; how many were forwarded."""
        result: list[int] = []

        def cut() -> None:
            result.append(len(self._pairs))
            for pair in self._pairs:
                _close(pair.client, reset)
                _close(pair.upstream, reset)
            self._pairs.clear()
            for sock in self._held:
                _close(sock, reset)
            self._held.clear()

        self._call(cut)
        return result[0]

    def stall(self) -> None:
        """Stop forwarding bytes in both directions; connections stay open."""
        self._call(lambda: setattr(self, "_stalled", True))

    def resume(self) -> None:
        """Forward again what a stall held back, and what follows."""
        self._call(lambda: setattr(self, "_stalled", False))

    def blackhole(self) -> None:
        """Accept new connections but never connect or answer them (current ones go on)."""
        self._call(lambda: setattr(self, "_blackholed", True))

    def heal(self) -> None:
        """End a black hole (its held connections are closed) and a stall."""

        def heal() -> None:
            self._blackholed = False
            self._stalled = False
            for sock in self._held:
                _close(sock)
            self._held.clear()

        self._call(heal)

    def close(self) -> None:
        """Stop listening, close every connection and end the thread (bounded)."""
        if self._closed:
            return

        def close() -> None:
            self._closed = True

        if self._thread.is_alive():
            self._call(close)
            self._thread.join(CONTROL_TIMEOUT)
        self._closed = True
        for pair in self._pairs:
            _close(pair.client)
            _close(pair.upstream)
        for sock in (*self._held, self._listener, self._waker, self._wakee):
            _close(sock)
        self._pairs.clear()
        self._held.clear()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, function: typing.Callable[[], None]) -> None:
        if self._closed or not self._thread.is_alive():
            raise RuntimeError(f"{self!r} is closed")
        done = threading.Event()
        self._calls.append((function, done))
        with contextlib.suppress(OSError):
            self._waker.send(b"\0")
        if not done.wait(CONTROL_TIMEOUT):
            raise TimeoutError(f"{self!r} did not carry out a control call in time")

    # -- the proxy thread --------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._closed:
            self._run_calls()
            if self._closed:
                break
            readers: list[socket.socket] = [self._listener, self._wakee]
            writers: list[socket.socket] = []
            by_source: dict[socket.socket, _Pipe] = {}
            by_sink: dict[socket.socket, _Pipe] = {}
            if not self._stalled:
                for pair in self._pairs:
                    for pipe in pair.pipes:
                        if not pipe.eof and len(pipe.buffer) < BUFFER_LIMIT:
                            readers.append(pipe.source)
                            by_source[pipe.source] = pipe
                        if pipe.buffer:
                            writers.append(pipe.sink)
                            by_sink[pipe.sink] = pipe
            try:
                readable, writable, _ = select.select(readers, writers, [], TICK)
            except (OSError, ValueError):
                # A socket closed under us (cut from close()): look again.
                self._drop_done(force_closed=True)
                continue
            for sock in readable:
                if sock is self._listener:
                    self._accept()
                elif sock is self._wakee:
                    with contextlib.suppress(OSError):
                        self._wakee.recv(4096)
                elif sock in by_source:
                    self._read(by_source[sock])
            for sock in writable:
                if sock in by_sink:
                    self._write(by_sink[sock])
            for pair in self._pairs:
                for pipe in pair.pipes:
                    if pipe.eof and not pipe.buffer and not pipe.shut:
                        pipe.shut = True
                        with contextlib.suppress(OSError):
                            pipe.sink.shutdown(socket.SHUT_WR)
            self._drop_done()
        self._run_calls()

    def _run_calls(self) -> None:
        while self._calls:
            function, done = self._calls.popleft()
            try:
                function()
            finally:
                done.set()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        self.accepted += 1
        if self._blackholed:
            self._held.append(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT)
        except OSError:
            _close(client)  # the target is down: so is the connection
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pairs.append(_Pair(client, upstream))

    def _read(self, pipe: _Pipe) -> None:
        try:
            data = pipe.source.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._fail(pipe)
            return
        if data:
            pipe.buffer += data
        else:
            pipe.eof = True

    def _write(self, pipe: _Pipe) -> None:
        try:
            sent = pipe.sink.send(pipe.buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._fail(pipe)
            return
        del pipe.buffer[:sent]

    def _fail(self, pipe: _Pipe) -> None:
        """A socket error on one side: the whole connection goes, with a reset."""
        for pair in self._pairs:
            if pipe in pair.pipes:
                _close(pair.client, reset=True)
                _close(pair.upstream, reset=True)
                for each in pair.pipes:
                    each.eof = each.shut = True
                    each.buffer.clear()

    def _drop_done(self, force_closed: bool = False) -> None:
        kept = []
        for pair in self._pairs:
            closed = force_closed and (pair.client.fileno() < 0 or pair.upstream.fileno() < 0)
            if pair.done or closed:
                _close(pair.client)
                _close(pair.upstream)
            else:
                kept.append(pair)
        self._pairs = kept
