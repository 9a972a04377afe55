"""What the job gives a script written in FTL2's own style (no `run()`; `asyncio.run(main())`
under `if __name__ == "__main__":`), which has no parameters to receive it in: the job's extra
variables and the path of its inventory. `automation()` already uses the job's inventory.

    from ftl2.job import extravars
"""

# Set by the runner before the script starts.
extravars: dict = {}
inventory_path: str = ""
# The script's own path; relative paths given to automation() (inventory=, policy=) are taken
# from its directory.
script_path: str = ""
