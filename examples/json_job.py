"""A job with JSON in and JSON out: a worker that counts words, and a client.

    python examples/json_job.py --server 127.0.0.1:4730

Runs both sides in one process: the worker answers three jobs, the client
prints each JSON result and the progress the worker reported on the way.
"""

from __future__ import annotations

import argparse
import asyncio

from reference_server.client import Client, Worker, WorkerJob, from_json, to_json

TEXTS = ["the quick brown fox", "jumps over", "the lazy dog"]


def count_words(job: WorkerJob) -> bytes:
    request = job.json()
    words = request["text"].split()
    for done in range(1, len(words) + 1):
        job.send_status(done, len(words))
    return to_json({"id": request["id"], "words": len(words), "longest": max(words, key=len)})


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:4730")
    args = parser.parse_args()
    async with await Worker.connect(args.server) as worker, \
            await Client.connect(args.server) as client:
        worker.register("count_words", count_words)
        working = asyncio.create_task(worker.work(max_jobs=len(TEXTS)))
        for number, text in enumerate(TEXTS):
            progress: list[tuple[int, int]] = []
            job = await client.submit("count_words", to_json({"id": number, "text": text}),
                                      on_status=lambda n, d, p=progress: p.append((n, d)))
            result = from_json(await job.result(timeout=30))
            print(f"job {number}: {result} (progress {progress})")
        await working


if __name__ == "__main__":
    asyncio.run(main())
