"""`logs --follow` in-process: its loop is clock.poll, so a test drives it look by look."""

import json

from cronsup.logview import LogView
from cronsup.model import RunStatus, Trigger
from cronsup.store import NewRun, open_store


def test_follow_shows_a_run_start_and_end_at_the_looks_after_they_happen(tmp_path, capsys):
    db = tmp_path / "runs.db"
    writer = open_store(db)
    reader = open_store(db, readonly=True)
    view = LogView(reader, "tick", escape=False, colour=False, now=lambda: 1000.0)
    slept, seen = [], []
    started: list[int] = []

    def sleep(seconds: float) -> None:
        # Each sleep is the gap between two looks; what it prints came from the last look.
        slept.append(seconds)
        seen.append(capsys.readouterr().out)
        if len(slept) == 2:
            started.extend(writer.insert_runs([NewRun("tick", Trigger.SCHEDULE, 1, 990.0, started_at=991.0)],
                                              host="h", boot_id="b"))
        elif len(slept) == 3:
            writer.finish_run(started[0], RunStatus.FAILED, finished_at=993.0, exit_code=3)
        elif len(slept) == 4:
            raise KeyboardInterrupt

    try:
        view.follow(10, False, None, False, True, poll=0.25, sleep=sleep)
    finally:
        reader.close()
        writer.close()
    assert slept == [0.25] * 4  # it waits before its first look: the latest runs are printed already
    assert seen[:2] == ["", ""]
    assert [json.loads(line)["status"] for line in seen[2].splitlines()] == ["running"]
    assert [json.loads(line)["status"] for line in seen[3].splitlines()] == ["failed"]
