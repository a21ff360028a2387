"""The latest checkpoint is written after the first and the last epoch, and in between only as often as keeps
its writes to CHECKPOINT_SHARE of the training time (a fast GPU's epochs take less than a write)."""
from __future__ import annotations

import json
import time

from medsight import api
from medsight.training import loop
from medsight.training.checkpoint import load_checkpoint


def test_slow_writes_are_paced_and_resume_still_continues(tiny_breast, tmp_path, monkeypatch):
    plan = json.loads((tiny_breast / "plan.json").read_text())
    plan["epochs"] = 6
    (tiny_breast / "plan.json").write_text(json.dumps(plan))
    real_save, written = loop.save_checkpoint, []

    def slow_save(path, state, p_hash):
        real_save(path, state, p_hash)
        if path.name == loop.LATEST:
            written.append(state["epoch"])
            time.sleep(1.0)  # a write that 20 s of training would have to pay for; these epochs take far less

    monkeypatch.setattr(loop, "save_checkpoint", slow_save)
    run = api.train(tiny_breast, out=tmp_path / "run", quiet=True, threads=1)
    assert written == [0, 5]
    log = [json.loads(x) for x in (run / "fold_0" / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == list(range(6))  # every epoch is logged all the same
    assert load_checkpoint(run / "fold_0" / loop.LATEST)["epoch"] == 5

    # unpaced (an unbounded share), every epoch is written
    written.clear()
    monkeypatch.setattr(loop, "save_checkpoint", lambda path, state, p_hash: (
        real_save(path, state, p_hash), path.name == loop.LATEST and written.append(state["epoch"])))
    monkeypatch.setattr(loop, "CHECKPOINT_SHARE", float("inf"))
    api.train(tiny_breast, out=tmp_path / "every", quiet=True, threads=1)
    assert written == list(range(6))
