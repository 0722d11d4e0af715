"""keras_custom_objects: --custom-objects MODULE[:ATTR] resolved to what loaders take."""

from __future__ import annotations

import uuid

import pytest

from converters.errors import UsageError
from converters.keras.custom_objects import resolve

MODULE = """
import math
from collections import OrderedDict

class Gate:
    pass

def swishish(x):
    return x

_private = 1
OBJECTS = {"Renamed": Gate}
NUMBER = 3
"""


@pytest.fixture
def module_name(tmp_path, monkeypatch):
    name = f"kit_objects_{uuid.uuid4().hex}"  # fresh per test: imports are cached
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_module_gives_its_own_classes_and_functions_only(module_name):
    objects = resolve([module_name])
    assert sorted(objects) == ["Gate", "swishish"]  # not OrderedDict/math it imported


def test_attr_may_be_a_dict_class_or_function(module_name):
    assert list(resolve([f"{module_name}:OBJECTS"])) == ["Renamed"]
    assert list(resolve([f"{module_name}:Gate"])) == ["Gate"]
    merged = resolve([f"{module_name}:Gate", f"{module_name}:swishish"])
    assert sorted(merged) == ["Gate", "swishish"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("{m}:Missing", "has no attribute 'Missing'"),
        ("{m}:NUMBER", "is a int"),
        ("kit_no_such_module_anywhere", "cannot import it"),
        (":Gate", "use MODULE or MODULE:ATTR"),
    ],
)
def test_bad_specs_are_usage_errors(module_name, spec, words):
    with pytest.raises(UsageError, match=words):
        resolve([spec.format(m=module_name)])
