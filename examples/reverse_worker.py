"""The classic Gearman worker: registers "reverse" and reverses strings.

    python examples/reverse_worker.py --server 127.0.0.1:4730 [--jobs N]
"""

from __future__ import annotations

import argparse
import asyncio

from reference_server.client import Worker, WorkerJob


def reverse(job: WorkerJob) -> bytes:
    job.send_status(1, 1)
    return job.data[::-1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:4730")
    parser.add_argument("--jobs", type=int, default=None, help="stop after N jobs")
    args = parser.parse_args()
    async with await Worker.connect(args.server, client_id="reverse-worker") as worker:
        worker.register("reverse", reverse)
        print(f"reverse worker ready on {args.server}", flush=True)
        await worker.work(max_jobs=args.jobs)


if __name__ == "__main__":
    asyncio.run(main())
