"""Keys of kept work: the same digest the commands named their parts with before the helper existed."""
from __future__ import annotations

import hashlib
import json

from medsight.kept_work import settings_key


def test_settings_key_is_the_digest_of_the_source_bytes_then_the_settings(tmp_path):
    settings = ["images", [32, 64], 15, None]
    points = tmp_path / "points.csv"
    points.write_text("image,x,y,label\na.png,1,2,rbc\n")
    by_hand = hashlib.sha1(points.read_bytes())
    by_hand.update(json.dumps(settings).encode())
    assert settings_key(settings, points) == by_hand.hexdigest()[:12]
    assert settings_key(settings) == hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:12]
    points.write_text("image,x,y,label\na.png,1,3,rbc\n")  # other points: other parts
    assert settings_key(settings, points) != by_hand.hexdigest()[:12]
