"""The demo automation script: what /opt/ftl2/main.py looks like in an EE image."""


async def run(inventory_path, extravars, runner):
    async with runner.automation() as ftl:
        await ftl.ping()
        result = await ftl.command(cmd=f"echo {extravars.get('greeting', 'hello')}")
        print(result["stdout"])
    return 0
