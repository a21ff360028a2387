"""The importers' shared rules, with hand-computed expectations: option parsing, classes, mask values."""
from __future__ import annotations

import pytest

from medsight.datasets.importers.common import (class_labels, mask_label_mapping, modality_of, parse_int_map,
                                                 parse_name_map)
from medsight.errors import InputError


def test_option_parsing():
    assert parse_int_map("0:1, 255:0", "--label-map") == {"0": 1, "255": 0}
    assert parse_int_map({255: 1}, "--label-map") == {"255": 1}
    with pytest.raises(InputError, match="--label-map entry"):
        parse_int_map("0-1", "--label-map")
    assert parse_name_map("FLAIR=Flair*,T1c=T1c*", "--channel-patterns") == {"FLAIR": "Flair*", "T1c": "T1c*"}
    assert list(parse_name_map("b=2,a=1", "x")) == ["b", "a"]  # order kept: it is the channel order


def test_class_values():
    assert class_labels(["malignant", "benign", "benign"]) == ({"benign": 0, "malignant": 1},
                                                                {"0": "benign", "1": "malignant"})
    value_of, labels = class_labels(["3", "1", "1.0"])
    assert value_of == {"1": 1, "1.0": 1, "3": 3} and labels == {"1": "class_1", "3": "class_3"}
    assert class_labels(["1", "x"])[0] == {"1": 0, "x": 1}  # one non-number: all are names


def test_mask_value_rules():
    assert mask_label_mapping({0: 90, 255: 10}) == ({"0": 0, "255": 1}, {"0": "background", "1": "foreground"}, [])
    assert mask_label_mapping({0: 90, 1: 10}) == ({}, {"0": "background", "1": "foreground"}, [])
    assert mask_label_mapping({0: 5, 1: 3, 4: 2})[1] == {"0": "background", "1": "label_1", "4": "label_4"}
    # anti-aliased: 995 of 1000 pixels at 0 or 255 -> threshold at 128
    mapping, labels, notes = mask_label_mapping({0: 600, 255: 395, 3: 2, 200: 3})
    assert mapping["127"] == 0 and mapping["128"] == 1 and len(mapping) == 256 and "99.50%" in notes[0]
    # 98% at the ends is not "anti-aliased binary": kept as label values
    assert mask_label_mapping({0: 600, 255: 380, 7: 20})[0] == {}
    with pytest.raises(InputError, match="look like images, not label masks"):
        mask_label_mapping({v: 1 for v in range(200)}, "labels/")


def test_modalities():
    assert [modality_of(n) for n in ("CT", "ct", "FLAIR", "T1c", "t2w", "R", "ultrasound")] == [
        "CT", "CT", "MR", "MR", "MR", "RGB", "other"]
