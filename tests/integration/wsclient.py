"""
A minimal RFC 6455 client for the live-socket tests (stdlib only): the
opening handshake (checking Sec-WebSocket-Accept), masked client frames,
and a reader of the server's frames that checks what the RFC asks of a
server (frames unmasked, control frames short and final).
"""
import base64
import hashlib
import json
import os
import socket
import struct
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


class Closed(Exception):
    """The server ended the TCP connection."""


class WsClient:
    """One socket. status: the handshake's HTTP status (101 when upgraded);
    headers: lower-cased; body: the parsed JSON of a refusal."""

    def __init__(self, server, path="/", protocols=None, headers=(), rcvbuf=None,
                 timeout=20.0, version="13", key=None, upgrade="websocket"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", server.port))
        if getattr(server, "tls_ca", None):   # wss://
            sock = server.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        self.key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % server.port,
                 "Connection: Upgrade", "Sec-WebSocket-Key: %s" % self.key,
                 "Sec-WebSocket-Version: %s" % version]
        if upgrade:
            lines.append("Upgrade: %s" % upgrade)
        if protocols:
            lines.append("Sec-WebSocket-Protocol: %s" % ", ".join(protocols))
        lines += list(headers)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        first, *rest = head.decode("latin-1").split("\r\n")
        self.status = int(first.split()[1])
        self.headers = {}
        for line in rest:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.body = None
        if self.status == 101:
            if self.headers.get("sec-websocket-accept") != accept_for(self.key):
                raise AssertionError("bad Sec-WebSocket-Accept: %r" % self.headers)
        else:
            n = int(self.headers.get("content-length", "0"))
            while len(self.buf) < n:
                self._fill(deadline)
            self.body = json.loads(self.buf[:n].decode()) if n else None
            self.sock.close()

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("nothing more from the server; have %r" % self.buf[:200])
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            raise Closed("connection closed; have %d bytes" % len(self.buf))
        self.buf += data

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)

    def read_frame(self, timeout=10.0):
        """(fin, opcode, payload) of the next frame; TimeoutError, Closed."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise AssertionError("a server must not mask its frames (RFC 6455 5.1)")
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n, deadline)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        fin, op = bool(b0 & 0x80), b0 & 0x0F
        if op >= 0x8 and (not fin or n > 125):
            raise AssertionError("control frames are final and at most 125 bytes")
        return fin, op, payload

    def send_frame(self, op, payload=b"", mask=True, fin=True):
        head = bytes([(0x80 if fin else 0) | op])
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            head += bytes([mbit | n])
        elif n < 65536:
            head += bytes([mbit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([mbit | 127]) + struct.pack("!Q", n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def next_event(self, timeout=10.0, answer_pings=True):
        """The next text message (parsed JSON) or ("close", code); pings are
        answered (or returned as ("ping", payload) when answer_pings is
        False)."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.01, deadline - time.monotonic())
            fin, op, payload = self.read_frame(left)
            if op == OP_PING:
                if not answer_pings:
                    return ("ping", payload)
                self.send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return ("close", code)
            if op != OP_TEXT or not fin:
                raise AssertionError("expected one whole text frame, got op %d fin %r" % (op, fin))
            return json.loads(payload.decode("utf-8"))

    def next_chat(self, timeout=10.0):
        ev = self.next_event(timeout)
        if not isinstance(ev, dict):
            raise AssertionError("expected a chat frame, got %r" % (ev,))
        return ev

    def quiet_for(self, seconds):
        """True if no text frame (nor close) arrives within `seconds`."""
        try:
            ev = self.next_event(seconds)
        except TimeoutError:
            return True
        raise AssertionError("expected silence, got %r" % (ev,))

    def closed_within(self, timeout):
        """True if the server ends the TCP connection within `timeout`,
        whatever frames come first."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
                self.buf = b""
        except Closed:
            return True
        except TimeoutError:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
