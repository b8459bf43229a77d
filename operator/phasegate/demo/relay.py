"""A TCP relay on 127.0.0.1: the hub reaches a region's API through it, so a demo or a test
can cut the hub off from that region (stop the relay: connections are refused) while the
region itself goes on, and bring it back on the same port.

    python -m phasegate.demo.relay --port 9443 --to 127.0.0.1:6443
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(port: int, host: str, target_port: int) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )

    server = await asyncio.start_server(
        relay, "127.0.0.1", port, family=socket.AF_INET, reuse_address=True
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phasegate.demo.relay", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="where to listen on 127.0.0.1")
    parser.add_argument("--to", required=True, help="host:port to relay to (127.0.0.1 only)")
    args = parser.parse_args(argv)
    host, _, port = args.to.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        parser.error("the relay only forwards to 127.0.0.1")
    asyncio.run(serve(args.port, "127.0.0.1", int(port)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
