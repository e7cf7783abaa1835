"""TCP proxies on loopback between a client and the test S3 server, to make the network
misbehave on purpose: cut connections, stall them, or take the "server" away and bring it
back on the same port (the client's endpoint does not change)."""

from __future__ import annotations

import contextlib
import socket
import threading


class CuttingProxy:
    """A TCP proxy on loopback that cuts every connection once it has carried `limit` bytes
    towards the server: uploads of large files die mid-body, small requests get through.
    `limit=None` carries everything."""

    def __init__(self, upstream_port: int, limit: int | None, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.limit = limit
        self.cuts = 0
        # Bytes carried back from the server, all connections together; past `reply_limit`
        # the proxy closes (the server "stops" in the middle of an answer).
        self.replied = 0
        self.reply_limit: int | None = None
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self._stopping = False
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._open_lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        carried = 0
        try:
            while data := src.recv(65536):
                carried += len(data)
                if counted and self.limit is not None and carried > self.limit:
                    self.cuts += 1
                    self._at_limit()
                    break
                if not counted:
                    self.replied += len(data)
                    if self.reply_limit is not None and self.replied > self.reply_limit:
                        threading.Thread(target=self.close, daemon=True).start()
                        break
                dst.sendall(data)
        except OSError:
            pass
        self._drop(src, dst)

    def _at_limit(self) -> None:
        """A connection carried `limit` bytes towards the server: it is cut (by the caller)."""

    def _drop(self, *sockets: socket.socket) -> None:
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
            with self._open_lock:
                self._open.discard(s)

    def close(self) -> None:
        """Stop listening and cut every connection: to a client the server is gone."""
        self._stopping = True
        # shutdown wakes the accept() blocked in the other thread; close alone would not,
        # and that accept would still take (and serve) one more connection.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self._open_lock:
            live = list(self._open)
        self._drop(*live)


class StallingProxy(CuttingProxy):
    """A proxy whose connections stall (stay open, carry nothing more) once they have carried
    `limit` bytes towards the server: an upload hangs mid-body until the client gives up."""

    def __init__(self, upstream_port: int, limit: int, port: int = 0) -> None:
        self.released = threading.Event()
        super().__init__(upstream_port, limit, port)

    def _at_limit(self) -> None:
        self.released.wait()  # neither read nor close: the sender blocks

    def close(self) -> None:
        self.released.set()
        super().close()


class SwitchableProxy:
    """A pass-through proxy on a fixed port that can be taken `down` (connections cut, new
    ones refused, as when the server stops), made to `stall` (connections cut, new ones
    accepted and never answered, as when the network hangs), and brought back `up` on the
    same port.
    With `die_after`, it goes down by itself once it has carried that many bytes from the
    server: a server that stops in the middle of a read."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._proxy: CuttingProxy | None = CuttingProxy(upstream_port, None)
        self.port = self._proxy.port
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def down(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None

    def stall(self) -> None:
        self.down()
        self._proxy = StallingProxy(self.upstream_port, 0, self.port)

    def up(self) -> None:
        if isinstance(self._proxy, StallingProxy):
            self.down()  # its stalled connections are cut: the clients try again
        if self._proxy is not None and self._proxy._stopping:
            self._proxy = None  # it went down by itself (`die_after`)
        if self._proxy is None:
            self._proxy = CuttingProxy(self.upstream_port, None, self.port)

    def die_after(self, carried: int) -> None:
        """Go down once `carried` more bytes came back from the server."""
        assert self._proxy is not None
        self._proxy.reply_limit = self._proxy.replied + carried

    @property
    def is_up(self) -> bool:
        return self._proxy is not None and not self._proxy._stopping
