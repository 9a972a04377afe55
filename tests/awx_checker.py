"""AWX's rules for a job's event stream, applied to a parsed worker stream.

AWX builds its output tree and host summaries from events; these are the properties it relies
on (awx/main/models/events.py, the job output view and the host summary code).
"""

# awx.main.models.events.BasePlaybookEvent.EVENT_TYPES
KNOWN = {
    "runner_on_failed", "runner_on_start", "runner_on_ok", "runner_on_error", "runner_on_skipped",
    "runner_on_unreachable", "runner_on_no_hosts", "runner_on_async_poll", "runner_on_async_ok",
    "runner_on_async_failed", "runner_item_on_ok", "runner_item_on_failed", "runner_item_on_skipped",
    "runner_retry", "runner_on_file_diff", "playbook_on_start", "playbook_on_notify",
    "playbook_on_include", "playbook_on_no_hosts_matched", "playbook_on_no_hosts_remaining",
    "playbook_on_task_start", "playbook_on_vars_prompt", "playbook_on_setup",
    "playbook_on_import_for_host", "playbook_on_not_import_for_host", "playbook_on_play_start",
    "playbook_on_stats", "debug", "verbose", "deprecated", "warning", "system_warning", "error",
}
RESULTS = {"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"}


def check(events, job_id=None, adhoc=False):
    """Raise AssertionError naming the first rule an event stream breaks."""
    assert events, "no events"
    line = 0
    for i, e in enumerate(events, 1):
        assert e.get("counter") == i, f"counter {e.get('counter')} where {i} was due"
        assert isinstance(e.get("uuid"), str) and e["uuid"], e
        assert e["event"] in KNOWN, f"unknown event name {e['event']!r}"
        assert not {"status", "zipfile", "eof"} & set(e), e
        assert e["start_line"] == line, f"event {i} starts at line {e['start_line']}, previous ended at {line}"
        assert e["end_line"] >= e["start_line"]
        assert e["end_line"] - e["start_line"] >= e["stdout"].count("\n"), e
        line = e["end_line"]
        if "job_id" in e:
            assert job_id is not None and e["job_id"] == int(job_id), e

    playbook = play = task = None
    open_hosts = {}
    seen_hosts = set()
    counts = {}
    for e in events:
        ev, parent = e["event"], e.get("parent_uuid")
        if ev == "playbook_on_start":
            assert parent is None and playbook is None, "a second playbook_on_start"
            playbook = e["uuid"]
        elif ev == "playbook_on_play_start":
            assert parent == playbook, "a play whose parent is not the playbook"
            play, task = e["uuid"], None
        elif ev == "playbook_on_task_start":
            assert parent == play, "a task whose parent is not the open play"
            assert not open_hosts, f"task started while hosts of the previous task were open: {open_hosts}"
            task = e["uuid"]
        elif ev == "runner_on_start":
            if adhoc:
                task = task or parent
            assert parent == task, f"runner_on_start under {parent}, open task is {task}"
            h = e["event_data"]["host"]
            assert h not in open_hosts, f"{h} started twice"
            open_hosts[h] = parent
        elif ev in RESULTS:
            assert parent == task, f"{ev} under {parent}, open task is {task}"
            h = e["event_data"]["host"]
            assert open_hosts.pop(h, None) == parent, f"{ev} for {h} without its runner_on_start"
            seen_hosts.add(h)
            c = counts.setdefault(h, {"ok": 0, "changed": 0, "failures": 0, "dark": 0, "skipped": 0, "ignored": 0})
            res = e["event_data"].get("res", {})
            if ev == "runner_on_ok":
                c["ok"] += 1
                c["changed"] += bool(res.get("changed"))
            elif ev == "runner_on_failed":
                if e["event_data"].get("ignore_errors"):
                    c["ignored"] += 1
                    c["ok"] += 1
                    c["changed"] += bool(res.get("changed"))
                else:
                    c["failures"] += 1
            elif ev == "runner_on_unreachable":
                c["dark"] += 1
            else:
                c["skipped"] += 1
            assert isinstance(e["event_data"]["host"], str)
            for key in ("task", "task_uuid", "playbook", "start", "end", "duration", "remote_addr"):
                assert key in e["event_data"], (key, e)
            # ansible-runner's callback sends the result with every outcome but a skip.
            assert ("res" in e["event_data"]) == (ev != "runner_on_skipped"), e
        elif ev == "verbose":
            assert parent is None
        elif ev == "playbook_on_stats":
            assert parent == playbook, "stats whose parent is not the playbook"
            assert not open_hosts, f"hosts never finished: {open_hosts}"
            data = e["event_data"]
            assert set(data["processed"]) == seen_hosts, (data["processed"], seen_hosts)
            for key in ("ok", "changed", "failures", "dark", "skipped", "ignored"):
                expected = {h: c[key] for h, c in counts.items() if c[key]}
                assert data[key] == expected, (key, data[key], expected)
                assert all(v > 0 for v in data[key].values())
            for key in ("rescued", "artifact_data"):
                assert key in data
    assert events[-1]["event"] == "playbook_on_stats" or not seen_hosts, "the job ends without playbook_on_stats"
