"""Numerics versions from the revisions the engine and the classes declare: only the changed cells get new keys;
until they are rerun their old rows are ``stale`` (left out of the table), and once a successor is written the old
cell is ``superseded`` (kept in the store, left out of every table).  No randomness."""
from estibench import estimators, models
from estibench.harness import runner as runner
from estibench.harness.runner import Cell
from estibench.harness.store import SCHEMA_VERSION, Store
from estibench.models.registry import Revision


def cell(estimator, particles=2):
    return Cell(study="gmm", model="gmm", estimator=estimator, particles=particles, seeds=(0,), iterations=10)


def write(store, c, value):
    store.write_cell(c, [(0, 10, "model_error", value)], 1.0, 0.1, "cpu", "test", "2026-01-01T00:00:00")


def relax_categorical():
    return estimators.implementation_for(estimators.REGISTRY.factory("relax"), "categorical")


def test_versions_stale_and_superseded(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "ENGINE_REVISIONS", ())
    monkeypatch.setattr(relax_categorical(), "revisions", ())
    store = Store(str(tmp_path))
    old_relax, old_ws = cell("relax"), cell("ws")
    k_relax, k_ws = old_relax.key(), old_ws.key()
    write(store, old_relax, 1.0)
    write(store, old_ws, 2.0)
    assert "numerics_version" not in old_relax.config()
    monkeypatch.setattr(relax_categorical(), "revisions", (Revision(1, "a bias fixed"),))
    new_relax = cell("relax")
    assert new_relax.config()["numerics_version"] == 2 and new_relax.key() != k_relax
    assert cell("ws").key() == k_ws  # unchanged cells keep their keys (stay cached)
    assert store.stale_keys() == {k_relax}
    assert set(store.table().estimator) == {"ws"}
    assert dict(zip(store.cells().key, store.cells().status))[k_relax] == "stale"
    write(store, new_relax, 3.0)
    statuses = dict(store.conn.execute("SELECT key, status FROM cells"))
    assert statuses[k_relax] == "superseded" and statuses[new_relax.key()] == "done"
    t = store.table()
    assert sorted(t.value) == [2.0, 3.0]
    assert k_relax not in set(store.cells().key) and k_relax in set(store.cells(include_superseded=True).key)
    # a revision of one implementation applies to the models of its latent kind only
    assert runner.numerics_version("gmm", "relax") == 2 and runner.numerics_version("sbn", "relax") == 2
    monkeypatch.setattr(relax_categorical(), "revisions", ())
    assert runner.numerics_version("gmm", "relax") == 1 and runner.numerics_version("sbn", "relax") == 2


def test_a_revision_that_does_not_invalidate_keeps_old_cells_in_the_tables(tmp_path, monkeypatch):
    """A revision with ``invalidates=False`` (the measurement stream) gives new keys, but the cells of the older
    version stay valid: not stale, in the table, until a successor supersedes them."""
    monkeypatch.setattr(runner, "ENGINE_REVISIONS", ())
    store = Store(str(tmp_path))
    old = cell("ws")
    old_key = old.key()
    write(store, old, 1.0)
    monkeypatch.setattr(runner, "ENGINE_REVISIONS", (Revision(6, "stream", invalidates=False),))
    new = cell("ws")
    new_key = new.key()
    assert new_key != old_key and new.config()["numerics_version"] == 2
    assert store.stale_keys() == set() and list(store.table().value) == [1.0]
    write(store, new, 2.0)
    assert list(store.table().value) == [2.0]
    # a later invalidating revision (of the model class here) makes the older version stale
    gmm = models.REGISTRY.factory("gmm")
    monkeypatch.setattr(gmm, "revisions", (Revision(7, "a bias fixed"),))
    assert runner.numerics_version("gmm", "ws") == 3 and store.stale_keys() == {new_key}


def test_the_current_versions():
    """Every cell moved to a new version with the measurement stream; the revisions its classes declare add up, in
    the order of their numbers; a pair this process does not know is never stale."""
    assert runner.numerics_version("gmm", "reinforce") == 2 and runner.numerics_version("gmm", "relax") == 3
    assert runner.numerics_version("sbn", "nvil") == 3 and runner.numerics_version("rbm_vae_tiny", "ws") == 2
    assert runner.numerics_version("gmm", "concrete") == 3 and runner.numerics_version("sbn", "concrete") == 2
    assert not runner.numerics_stale("gmm", "reinforce", 1) and runner.numerics_stale("gmm", "relax", 1)
    assert not runner.numerics_stale("gmm", "relax", 2)
    assert not runner.numerics_stale("nosuch.mod:Model", "relax", 1)
    assert [r.order for _, r in runner.numerics_history("sbn", "relax")] == [5, 6]


def test_every_registered_model_declares_its_latent_kind():
    """``latent_kind`` (what picks a family's implementation, and its revisions, before a model is built) agrees
    with the built model's latent space, for every registered model (small settings where it has them)."""
    small = {"gmm": {}, "linear_gaussian": {}}
    for name in models.REGISTRY.names():
        factory = models.REGISTRY.factory(name)
        try:
            model = runner.build_model(name, **small.get(name, {}))
        except Exception as err:  # a model whose data is not in this checkout: its declaration is still checked
            assert factory.latent_kind, f"{name} declares no latent_kind ({err})"
            continue
        assert factory.latent_kind == model.latent.kind, name


def test_a_changed_default_changes_the_key_by_itself(monkeypatch):
    """A cell records its effective options: changing a default changes the key, with no table to keep; passing an
    option at its default is the same cell; the training stream's seed stays that of the settings as requested."""
    import inspect
    base = cell("dww")
    explicit = Cell(**{**base.__dict__, "estimator_options": {"delta": 0.2}})
    assert explicit.key() == base.key() and base.config()["estimator_options"] == {"delta": 0.2}
    key, seed = base.key(), base.rng_seed()
    dww = estimators.REGISTRY.factory("dww")
    signature = inspect.signature(dww)
    changed = signature.replace(parameters=[p.replace(default=0.3) if p.name == "delta" else p
                                            for p in signature.parameters.values()])
    monkeypatch.setattr(dww, "__signature__", changed, raising=False)
    assert cell("dww").config()["estimator_options"] == {"delta": 0.3}
    assert cell("dww").key() != key and cell("dww").rng_seed() == seed


def test_schema_2_stores_keep_their_undebiased_trajectory_variance_under_another_name(tmp_path):
    """A store written before the trajectory variance was debiased (schema 2) is upgraded in place: its
    ``grad_logvar_ema`` rows become ``grad_logvar_ema_undebiased``; other metrics are untouched."""
    import sqlite3
    store = Store(str(tmp_path))
    c = cell("ws")
    store.write_cell(c, [(0, 10, "grad_logvar_ema", -3.0), (0, 10, "valid_ll", -100.0)], 1.0, 0.1, "cpu", "t",
                     "2026-01-01T00:00:00")
    with store.conn:
        store.conn.execute("UPDATE meta SET value = '2' WHERE name = 'schema_version'")
    store.close()
    upgraded = Store(str(tmp_path))
    assert upgraded.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert sorted(upgraded.table().metric) == ["grad_logvar_ema_undebiased", "valid_ll"]
    upgraded.close()
    again = Store(str(tmp_path))  # an upgraded store is not renamed again
    assert sorted(again.table().metric) == ["grad_logvar_ema_undebiased", "valid_ll"]
    assert sqlite3.connect(again.path).execute("SELECT value FROM meta WHERE name='schema_version'").fetchone() == (
        str(SCHEMA_VERSION),)


def test_a_model_whose_declared_latent_kind_is_wrong_is_refused_when_built():
    """A cell's numerics version is computed from the declared ``latent_kind`` before the model is built, so a model
    whose latents are of another kind is refused (one line) when its cell is built; an undeclared kind passes unless
    the estimator implementation for its latents declares revisions."""
    import pytest
    from estibench.models.gmm import GMM

    class Mislabelled(GMM):
        latent_kind = "bernoulli"

    class Undeclared(GMM):
        latent_kind = ""

    relax, ws = estimators.REGISTRY.factory("relax"), estimators.REGISTRY.factory("ws")
    with pytest.raises(ValueError, match="declare latent_kind = 'categorical'"):
        runner.check_latent_kind(Mislabelled(), ws)
    runner.check_latent_kind(Undeclared(), ws)  # WS declares no revision
    with pytest.raises(ValueError, match="declare latent_kind"):
        runner.check_latent_kind(Undeclared(), relax)  # categorical RELAX's revision would be missed
    runner.check_latent_kind(GMM(), relax)
