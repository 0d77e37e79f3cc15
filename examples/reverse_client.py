"""The classic Gearman client: submits strings to "reverse" and prints the results.

    python examples/reverse_client.py --server 127.0.0.1:4730 hello world
    python examples/reverse_client.py --background hello     # fire and forget
"""

from __future__ import annotations

import argparse
import asyncio

from reference_server.client import Client


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:4730")
    parser.add_argument("--background", action="store_true")
    parser.add_argument("words", nargs="+")
    args = parser.parse_args()
    async with await Client.connect(args.server) as client:
        if args.background:
            for word in args.words:
                job = await client.submit("reverse", word, background=True)
                print(f"{word} -> queued as {job.handle.decode()}")
            return
        jobs = [await client.submit("reverse", word) for word in args.words]
        for word, job in zip(args.words, jobs):
            print(f"{word} -> {(await job.result(timeout=30)).decode()}")


if __name__ == "__main__":
    asyncio.run(main())
