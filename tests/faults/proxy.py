"""A loopback TCP proxy that breaks connections on demand.

It runs in a process of its own (this file run as a script) with plain non-blocking
sockets and `select`, so it serves whatever event loop (or none) the test runs, and keeps
serving while the test's process is stuck in a blocking driver call that holds the GIL
(libpq's cancel request, for one, which itself goes through the proxy). `TcpProxy` starts
and steers it; between a client and a target server it forwards bytes both ways until told
otherwise:

- `cut()` closes every current connection (both ends; with `reset=True` as a TCP reset);
- `stall()` stops forwarding bytes (connections stay open) until `resume()`; with
  `existing_only=True` only on the current connections, as a NAT or a load balancer that
  silently dropped idle flows: new connections work;
- `blackhole()` accepts new connections but never connects them anywhere nor answers,
  until `heal()`, which also resumes a stall.

Every control call waits at most `CONTROL_TIMEOUT` for the proxy to carry it out; the
proxy process ends when `close()` is called or the test process goes away.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import socket
import struct
import subprocess
import sys
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

    __slots__ = ("client", "pipes", "stalled", "upstream")

    def __init__(self, client: socket.socket, upstream: socket.socket, stalled: bool) -> None:
        self.client = client
        self.upstream = upstream
        self.pipes = (_Pipe(client, upstream), _Pipe(upstream, client))
        self.stalled = stalled  # forwards nothing until resumed

    @property
    def done(self) -> bool:
        return all(pipe.shut for pipe in self.pipes)


def _close(sock: socket.socket, reset: bool = False) -> None:
    with contextlib.suppress(OSError):
        if reset:
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class _Engine:
    """The proxy itself, in the proxy process: listens on `host:port` (a free loopback
    port) and forwards to `target`, in a thread of its own."""

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
        return f"<proxy {self.host}:{self.port} -> {self.target[0]}:{self.target[1]}>"

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

    def stall(self, existing_only: bool = False) -> None:
        """Stop forwarding bytes in both directions; connections stay open. With
        `existing_only`, only the current connections: new ones are forwarded."""

        def stall() -> None:
            for pair in self._pairs:
                pair.stalled = True
            self._stalled = not existing_only

        self._call(stall)

    def resume(self) -> None:
        """Forward again what a stall held back, and what follows."""
        self._call(self._resume)

    def _resume(self) -> None:
        self._stalled = False
        for pair in self._pairs:
            pair.stalled = False

    def blackhole(self) -> None:
        """Accept new connections but never connect or answer them (current ones go on)."""
        self._call(lambda: setattr(self, "_blackholed", True))

    def heal(self) -> None:
        """End a black hole (its held connections are closed) and a stall."""

        def heal() -> None:
            self._blackholed = False
            self._resume()
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
            for pair in self._pairs:
                if pair.stalled:
                    continue
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
        self._pairs.append(_Pair(client, upstream, self._stalled))

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


# -- the proxy process, and its remote control in the test's process -------------------------


def _main(argv: list[str]) -> None:
    """Run a proxy to `argv`'s target: print its port, then carry out one command per line
    of stdin, answering each with `ok <its result> <forwarded now> <accepted so far>`."""
    target_host, target_port, host = argv[0], int(argv[1]), argv[2]
    engine = _Engine(target_host, target_port, host)
    commands: dict[str, typing.Callable[[], object]] = {
        "count": lambda: 0,
        "cut": engine.cut,
        "cut-reset": lambda: engine.cut(reset=True),
        "stall": engine.stall,
        "stall-existing": lambda: engine.stall(existing_only=True),
        "resume": engine.resume,
        "blackhole": engine.blackhole,
        "heal": engine.heal,
    }
    print(engine.port, flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "close":
                break
            result = commands[command]()
            print(f"ok {result or 0} {engine.connections} {engine.accepted}", flush=True)
    finally:
        engine.close()


class TcpProxy:
    """A proxy process listening on `host:port` (a free loopback port), forwarding to
    `target_host:target_port`; see the module docstring."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self._process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), target_host, str(target_port), host],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            self.port = int(self._read_line())
        except BaseException:
            self.close()
            raise
        # Connections the proxy accepted so far (as of the last control call).
        self.accepted = 0

    def __repr__(self) -> str:
        return f"<TcpProxy {self.host}:{self.port} -> {self.target[0]}:{self.target[1]}>"

    def _read_line(self) -> str:
        stdout = self._process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], CONTROL_TIMEOUT)
        if not ready:
            raise TimeoutError(f"the proxy process did not answer within {CONTROL_TIMEOUT} s")
        line = stdout.readline()
        if not line:
            raise RuntimeError("the proxy process has ended")
        return line

    def _command(self, command: str) -> int:
        """Send one command to the proxy process; its result."""
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()
        _, result, _, accepted = self._read_line().split()
        self.accepted = int(accepted)
        return int(result)

    @property
    def connections(self) -> int:
        """Connections currently forwarded (black-holed ones not counted)."""
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write("count\n")
        stdin.flush()
        _, _, forwarded, accepted = self._read_line().split()
        self.accepted = int(accepted)
        return int(forwarded)

    def cut(self, reset: bool = False) -> int:
        """Close every current connection, black-holed ones too; how many were forwarded."""
        return self._command("cut-reset" if reset else "cut")

    def stall(self, existing_only: bool = False) -> None:
        """Stop forwarding bytes in both directions; connections stay open. With
        `existing_only`, only the current connections: new ones are forwarded."""
        self._command("stall-existing" if existing_only else "stall")

    def resume(self) -> None:
        """Forward again what a stall held back, and what follows."""
        self._command("resume")

    def blackhole(self) -> None:
        """Accept new connections but never connect or answer them (current ones go on)."""
        self._command("blackhole")

    def heal(self) -> None:
        """End a black hole (its held connections are closed) and a stall."""
        self._command("heal")

    def close(self) -> None:
        """End the proxy process and with it every connection (bounded)."""
        process = self._process
        if process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert process.stdin is not None
                process.stdin.write("close\n")
                process.stdin.close()
            try:
                process.wait(CONTROL_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(CONTROL_TIMEOUT)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()


if __name__ == "__main__":
    _main(sys.argv[1:])
