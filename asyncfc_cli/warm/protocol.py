"""Messages on the worker's socket: a 4-byte big-endian length, then JSON.

JSON keeps the framing debuggable and carries every ``str`` Python can hold
(a lone surrogate from an undecodable environment byte travels as ``\\udcxx``
and comes back the same). File descriptors travel as SCM_RIGHTS ancillary
data with the first bytes of a message.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

VERSION = 1  # of this protocol: a client and a worker must agree on it
MAX_MESSAGE = 32 * 1024 * 1024  # an environment is large, never this large
MAX_FDS = 8
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """A message that is not one (too large, not JSON, truncated descriptors)."""


def encode(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message, separators=(",", ":")).encode("ascii")
    if len(payload) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(payload)} bytes is larger than {MAX_MESSAGE}")
    return _HEADER.pack(len(payload)) + payload


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
    """Send one message, with ``fds`` attached to its first bytes."""
    data = encode(message)
    if fds:
        sent = socket.send_fds(sock, [data], list(fds))
        data = data[sent:]
    if data:
        sock.sendall(data)


class Channel:
    """Reads messages from a stream socket, keeping what arrives past a message's end."""

    def __init__(self, sock: socket.socket, max_fds: int = 0):
        self.sock = sock
        self.max_fds = max_fds
        self.fds: list[int] = []  # descriptors received so far, not yet taken
        self._buffer = bytearray()
        self.eof = False

    def fill(self) -> bool:
        """One receive into the buffer; False at end of stream."""
        if self.max_fds:
            data, fds, flags, _ = socket.recv_fds(self.sock, 65536, self.max_fds)
            self.fds.extend(fds)
            if flags & socket.MSG_CTRUNC:
                raise ProtocolError("file descriptors were truncated")
        else:
            data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self._buffer += data
        return True

    def next(self) -> dict[str, Any] | None:
        """The next complete message in the buffer, if there is one."""
        if len(self._buffer) < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > MAX_MESSAGE:
            raise ProtocolError(f"message of {length} bytes announced")
        if len(self._buffer) < _HEADER.size + length:
            return None
        payload = bytes(self._buffer[_HEADER.size:_HEADER.size + length])
        del self._buffer[:_HEADER.size + length]
        try:
            message = json.loads(payload)
        except ValueError as exc:
            raise ProtocolError(f"not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError("a message must be a JSON object")
        return message

    def read(self) -> dict[str, Any] | None:
        """Block until a whole message is here (None: the peer closed first)."""
        while True:
            message = self.next()
            if message is not None:
                return message
            if not self.fill():
                return None

    def take_fds(self) -> list[int]:
        fds, self.fds = self.fds, []
        return fds

    def close_fds(self) -> None:
        for fd in self.take_fds():
            try:
                os.close(fd)
            except OSError:
                pass


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end (SO_PEERCRED: the kernel's word, not the peer's)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]
