"""A rolling change (a playbook's `serial:` with `max_fail_percentage: 0`): hosts in batches of
two, each batch checked before the next starts; `register` as the value a call returns;
`run_once` as a call on one host; `ignore_errors` as `_ignore_errors`.

    ftl2-runner play guest-python/examples/rolling.py -i inventory.ini
"""

import asyncio

from ftl2 import automation

BATCH = 2


async def main():
    async with automation(fail_fast=False) as ftl:
        hosts = [h.name for h in ftl.hosts.all]
        first = hosts[0]
        stamp = await ftl.run_on(first, "command", cmd="date +%s", _name="stamp (run once)")
        version = stamp[0].output["stdout"]
        for start in range(0, len(hosts), BATCH):
            batch = hosts[start:start + BATCH]
            results = await ftl.run_on(batch, "copy", content=f"release {version}\n",
                                       dest="/tmp/ftl2-example-release", _name=f"release to {batch}")
            failed = [r.host for r in results if not r.success]
            if failed:
                raise SystemExit(f"stopping the rollout: {failed} failed")
        probe = await ftl.run_on(first, "command", cmd="test -e /etc/ftl2-example-marker",
                                 _ignore_errors=True, _name="optional marker")
        print(f"marker present: {probe[0].success}")
        print(f"done: {len(hosts)} hosts on release {version}")


if __name__ == "__main__":
    asyncio.run(main())
