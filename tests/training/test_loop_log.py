"""Each epoch's log row says where its time went: the optimiser steps, the validation, the whole epoch."""
from __future__ import annotations

import json

from medsight import api


def test_log_rows_split_the_epoch_time(tiny_breast, tmp_path):
    run = api.train(tiny_breast, out=tmp_path / "run", quiet=True, threads=1)
    rows = [json.loads(line) for line in (run / "fold_0" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    for r in rows:
        assert 0 < r["steps_seconds"] <= r["seconds"]
        if r.get("val_score") is not None:
            assert 0 < r["validation_seconds"]
            assert r["steps_seconds"] + r["validation_seconds"] <= r["seconds"]
    assert any("validation_seconds" in r for r in rows)  # the last epoch always validates
