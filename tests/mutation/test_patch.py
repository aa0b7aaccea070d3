"""RFC 6902 ops between a pod and its planned copy: minimal, escaped, and blind to branches shared by identity."""

from __future__ import annotations

import copy

import jsonpatch

from webhook.mutation.patch import diff


def test_diff_escapes_and_appends():
    old = {"a/b": 1, "l": [1], "keep": {"x": 1}, "gone": 2}
    new = {"a/b": 2, "l": [1, 2], "keep": old["keep"], "new~": 3}
    assert diff(old, new) == [
        {"op": "remove", "path": "/gone"},
        {"op": "replace", "path": "/a~1b", "value": 2},
        {"op": "add", "path": "/l/1", "value": 2},
        {"op": "add", "path": "/new~0", "value": 3},
    ]


def test_shared_branches_are_not_looked_at_and_equal_values_give_no_op():
    class Unequal(dict):  # a branch that would differ from anything, were it compared
        def __eq__(self, other):
            return False

    shared = Unequal(x=1)
    old = {"shared": shared, "same": {"a": "1"}, "n": 1}
    new = {"shared": shared, "same": {"a": "1"}, "n": 1}
    assert diff(old, new) == []


def test_a_number_turned_string_is_replaced():
    assert diff({"v": 1}, {"v": "1"}) == [{"op": "replace", "path": "/v", "value": "1"}]


def test_the_ops_turn_the_old_document_into_the_new():
    old = {"spec": {"containers": [{"name": "a", "resources": {}}], "tolerations": [{"key": "k"}]}, "x": [1, 2]}
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    new["spec"]["tolerations"].append({"key": "nvidia.com/gpu"})
    new["x"] = [3]
    del new["spec"]["containers"][0]["name"]
    assert jsonpatch.apply_patch(copy.deepcopy(old), diff(old, new)) == new
