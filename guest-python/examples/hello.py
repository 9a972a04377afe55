"""Hello, hosts: reach every host of the job's inventory, run a command on each, and read the
results. Written in FTL2's own style, so it runs unchanged under FTL2 and in an AWX job.

    ftl2-runner play guest-python/examples/hello.py -i inventory.ini
"""

import asyncio

from ftl2 import automation


async def main():
    async with automation() as ftl:
        await ftl.all.ping()  # raises FTL2ConnectionError naming any host that does not answer
        results = await ftl.all.command(cmd="uname -r", _name="kernel release")
        for r in results:  # one ExecuteResult per host, in inventory order
            print(f"{r.host}: {r.output['stdout']}")
        print(f"done: {len(results)} hosts answered")


if __name__ == "__main__":
    asyncio.run(main())
