"""``Registry.unregister``: a public way to remove a name (tests' temporary entries, plug-in reloading)."""
import pytest

from estibench import studies
from estibench.models.registry import Registry, UnknownNameError


def test_unregister_removes_a_name_and_refuses_an_unknown_one_in_one_line():
    registry = Registry("widget", group="estibench.tests-no-such-group")
    registry.register("a")(lambda: "first")
    registry.register("b")(lambda: "b")
    registry.unregister("a")
    assert "a" not in registry and registry.known("a") is None and registry.names() == ["b"]
    registry.register("a")(lambda: "second")  # the name is free again
    assert registry.get("a") == "second"
    with pytest.raises(UnknownNameError) as info:
        registry.unregister("nope")
    assert str(info.value) == "cannot unregister widget 'nope': it is not registered"
    assert "\n" not in str(info.value) and registry.names() == ["a", "b"]


def test_studies_unregister_forgets_the_study_and_ignores_an_unknown_name():
    gmm = studies.get("gmm")
    studies.REGISTRY.register("temporary_unregistered")(
        lambda: studies.Study(name="temporary_unregistered", description="", task=gmm.task, suites={}))
    try:
        assert studies.get("temporary_unregistered").name == "temporary_unregistered"
    finally:
        studies.unregister("temporary_unregistered")
    assert "temporary_unregistered" not in studies.names()
    with pytest.raises(UnknownNameError):
        studies.get("temporary_unregistered")
    studies.unregister("temporary_unregistered")  # an unknown name is ignored
