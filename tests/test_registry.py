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


def test_studies_declare_the_models_they_train_and_a_subclass_needs_no_line():
    """Models name no study (``LatentVariableModel`` has no ``studies``); each study lists its models, and a subclass
    of a listed model (a plug-in with another default) is trained by the same study without any registry line."""
    from estibench import models
    from estibench.models.base import LatentVariableModel
    from estibench.models.gmm import GMM

    assert "studies" not in vars(LatentVariableModel)
    for name in models.names():
        assert "studies" not in vars(models.REGISTRY.factory(name)), name

    class FiveClusterGMM(GMM):
        def __init__(self, *args, num_clusters=5, **kwargs):
            super().__init__(*args, num_clusters=num_clusters, **kwargs)

    assert "gmm" in studies.studies_of(FiveClusterGMM) and studies.studies_of(FiveClusterGMM) == studies.studies_of(GMM)
    assert studies.studies_of(models.REGISTRY.factory("linear_gaussian")) == []
    for study in studies.names():  # every listed model is registered and accepted by its own study
        for name in studies.get(study).models:
            assert study in studies.studies_of(models.REGISTRY.factory(name))
