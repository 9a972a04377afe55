"""A playbook's everyday shapes as a script: facts, a templated file with its own variables, a
handler that runs only when something changed, `when` as `if`, and tags.

The playbook it replaces:

    - hosts: all
      gather_facts: true
      tasks:
        - template: {src: motd.j2, dest: /tmp/ftl2-example-motd, mode: "0644"}
          vars: {team: ops, notes: [...]}
          notify: announce
          tags: [motd]
        - command: cat /etc/debian_version
          when: ansible_os_family == "Debian"
          changed_when: false
      handlers:
        - name: announce
          command: logger motd changed

    ftl2-runner play guest-python/examples/web_config.py -i inventory.ini [--tags motd]
"""

import asyncio

from ftl2 import automation

NOTES = ["backups run at 02:00", "ask #ops before rebooting"]


async def main():
    async with automation() as ftl:
        facts = await ftl.all.setup(_name="gather facts")
        written = await ftl.all.template(
            # src is looked for in templates/ beside the script, as a playbook's is
            src="motd.j2", dest="/tmp/ftl2-example-motd", mode="0644",
            team="ops", notes=NOTES,  # keywords that are not the module's are template variables
            _tags=["motd"], _name="motd")
        changed = [r.host for r in written if r.changed]
        if changed:  # the handler: only where the file changed
            await ftl.run_on(changed, "command", cmd="logger motd changed", _name="announce")
        debian = [f.host for f in facts if f.output["ansible_facts"].get("ansible_os_family") == "Debian"]
        if debian:  # `when:` is an if over the facts
            await ftl.run_on(debian, "command", cmd="cat /etc/debian_version",
                             _changed_when=False, _name="debian version")
        print(f"done: motd changed on {len(changed)} of {len(written)} hosts")


if __name__ == "__main__":
    asyncio.run(main())
