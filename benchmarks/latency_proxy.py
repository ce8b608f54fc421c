"""A loopback TCP proxy that adds a fixed delay to every HTTP request, for
benchmarking an object store client against a local S3-protocol server as if
the server were a round trip away.

Bytes from the client go through a delay line: each chunk is forwarded to the
upstream server `--delay-ms` after it arrived (order kept, no throughput cap),
so every request reaches the server that much later and every response comes
back that much later, however many run in parallel on however many
connections. Responses are forwarded at once. Connecting to the proxy costs
nothing extra (no TLS, no handshake delay), unlike a real store.

The proxy also parses the client's byte stream as HTTP/1.1 (heads, then a
Content-Length or chunked body) to count requests by method and the bytes
each way. A control port answers one line, `stats` (JSON of the counters) or
`reset` (zeroes them and answers the counters it had).

Usage (from the repo root):
    python -m benchmarks.latency_proxy --upstream 127.0.0.1:PORT [--delay-ms 20]
        [--port 0] [--port-file FILE] [--max-seconds 7200] [--log FILE]
The port file gets "PORT CONTROL_PORT" once the proxy listens. It binds
127.0.0.1 only and exits after --max-seconds or on SIGTERM.
"""
import argparse
import asyncio
import json
import os
import signal
import time

LISTEN_HOST = "127.0.0.1"
# Bytes read per socket read; the delay line holds chunks of at most this size.
READ_CHUNK = 256 * 1024


class Counters:
    def __init__(self, log=None):
        self.log = log
        self.reset()

    def reset(self):
        self.connections = 0
        self.requests = {}
        self.bytes_up = 0
        self.bytes_down = 0
        self.unparsed_connections = 0

    def snapshot(self):
        return {
            "connections": self.connections,
            "requests": sum(self.requests.values()),
            "by_method": dict(self.requests),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "unparsed_connections": self.unparsed_connections,
        }


class RequestCounter:
    """Incremental HTTP/1.1 request framing of one connection's client bytes,
    only to count requests; a framing it cannot follow stops the counting for
    that connection (the bytes are forwarded regardless)."""

    def __init__(self, counters):
        self.counters = counters
        self.buf = b""
        self.state = "head"
        self.remaining = 0
        self.dead = False

    def feed(self, data):
        if self.dead:
            return
        self.buf += data
        try:
            while self._step():
                pass
        except ValueError:
            self.dead = True
            self.buf = b""
            self.counters.unparsed_connections += 1

    def _step(self):
        if self.state == "head":
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 1 << 20:
                    raise ValueError("request head over 1 MiB")
                return False
            head = self.buf[:end].decode("latin-1")
            self.buf = self.buf[end + 4:]
            lines = head.split("\r\n")
            method = lines[0].split(" ", 1)[0]
            if not method.isalpha():
                raise ValueError("not an HTTP request line")
            if self.counters.log is not None:
                rng = [v for v in lines[1:] if v.lower().startswith("range:")]
                self.counters.log.write(f"{time.time():.3f} {lines[0]} {rng[0] if rng else ''}\n")
            self.counters.requests[method] = self.counters.requests.get(method, 0) + 1
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.state = "chunk-size"
            else:
                self.remaining = int(headers.get("content-length", "0"))
                self.state = "body"
            return True
        if self.state == "body":
            take = min(self.remaining, len(self.buf))
            self.buf = self.buf[take:]
            self.remaining -= take
            if self.remaining == 0:
                self.state = "head"
                return True
            return False
        if self.state == "chunk-size":
            end = self.buf.find(b"\r\n")
            if end < 0:
                return False
            size = int(self.buf[:end].split(b";")[0], 16)
            self.buf = self.buf[end + 2:]
            if size == 0:
                self.state = "trailers"
            else:
                self.remaining = size + 2
                self.state = "chunk-data"
            return True
        if self.state == "chunk-data":
            take = min(self.remaining, len(self.buf))
            self.buf = self.buf[take:]
            self.remaining -= take
            if self.remaining == 0:
                self.state = "chunk-size"
                return True
            return False
        if self.state == "trailers":
            end = self.buf.find(b"\r\n")
            if end < 0:
                return False
            self.buf = self.buf[end + 2:]
            if end == 0:
                self.state = "head"
            return True
        raise ValueError(self.state)


async def delayed_pipe(reader, writer, delay, counters, counter):
    """Client to server: every chunk leaves `delay` seconds after it came."""
    queue = asyncio.Queue()

    async def drain():
        loop = asyncio.get_running_loop()
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if chunk is None:
                break
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    task = asyncio.ensure_future(drain())
    loop = asyncio.get_running_loop()
    try:
        while True:
            chunk = await reader.read(READ_CHUNK)
            now = loop.time()
            if not chunk:
                queue.put_nowait((now + delay, None))
                break
            counters.bytes_up += len(chunk)
            counter.feed(chunk)
            queue.put_nowait((now + delay, chunk))
        await task
    except (ConnectionError, OSError):
        pass
    finally:
        task.cancel()


async def pipe(reader, writer, counters):
    try:
        while True:
            chunk = await reader.read(READ_CHUNK)
            if not chunk:
                break
            counters.bytes_down += len(chunk)
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def handle(client_reader, client_writer, upstream, delay, counters):
    counters.connections += 1
    try:
        server_reader, server_writer = await asyncio.open_connection(*upstream)
    except OSError:
        client_writer.close()
        return
    up = asyncio.ensure_future(delayed_pipe(client_reader, server_writer, delay, counters, RequestCounter(counters)))
    down = asyncio.ensure_future(pipe(server_reader, client_writer, counters))
    try:
        await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        # Let the other direction finish what it has (a response after the
        # client's half-close), bounded.
        await asyncio.wait([up, down], timeout=30)
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass
    finally:
        for t in (up, down):
            t.cancel()
        for w in (client_writer, server_writer):
            try:
                w.close()
            except (ConnectionError, OSError):
                pass


async def control(reader, writer, counters):
    try:
        line = (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
        snap = counters.snapshot()
        if line == "reset":
            counters.reset()
        writer.write((json.dumps(snap) + "\n").encode())
        await writer.drain()
    except (asyncio.TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(upstream, delay_ms, port, port_file, max_seconds, log_path=None):
    counters = Counters(open(log_path, "a", buffering=1) if log_path else None)
    delay = delay_ms / 1000.0
    server = await asyncio.start_server(lambda r, w: handle(r, w, upstream, delay, counters), LISTEN_HOST, port)
    ctl = await asyncio.start_server(lambda r, w: control(r, w, counters), LISTEN_HOST, 0)
    ports = f"{server.sockets[0].getsockname()[1]} {ctl.sockets[0].getsockname()[1]}"
    if port_file:
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(ports)
        os.replace(tmp, port_file)
    else:
        print(ports, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()
    ctl.close()


def query(control_port, command="stats"):
    """Asks a running proxy for its counters (`reset` also zeroes them)."""
    import socket

    with socket.create_connection((LISTEN_HOST, control_port), timeout=10) as s:
        s.sendall((command + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, help="HOST:PORT of the server behind the proxy")
    p.add_argument("--delay-ms", type=float, default=20.0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--max-seconds", type=float, default=7200.0)
    p.add_argument("--log", help="append each request line (and its Range) to this file")
    a = p.parse_args()
    host, _, port = a.upstream.rpartition(":")
    started = time.time()
    asyncio.run(serve((host, int(port)), a.delay_ms, a.port, a.port_file, a.max_seconds, a.log))
    return time.time() - started


if __name__ == "__main__":
    main()
