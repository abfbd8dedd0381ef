"""Per-(study, estimator) numerics versions: only the changed cells get new keys; until they are
rerun their old rows are ``stale`` (left out of the table), and once a successor is written the old
cell is ``superseded`` (kept in the store, left out of every table).  No randomness."""
from estibench.harness import runner as runner
from estibench.harness.runner import Cell
from estibench.harness.store import SCHEMA_VERSION, Store


def cell(estimator, particles=2):
    return Cell(study="gmm", model="gmm", estimator=estimator, particles=particles, seeds=(0,), iterations=10)


def write(store, c, value):
    store.write_cell(c, [(0, 10, "model_error", value)], 1.0, 0.1, "cpu", "test", "2026-01-01T00:00:00")


def test_versions_stale_and_superseded(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "NUMERICS_CHANGES", ())
    store = Store(str(tmp_path))
    old_relax, old_ws = cell("relax"), cell("ws")
    k_relax, k_ws = old_relax.key(), old_ws.key()
    write(store, old_relax, 1.0)
    write(store, old_ws, 2.0)
    assert "numerics_version" not in old_relax.config()
    monkeypatch.setattr(runner, "NUMERICS_CHANGES", (runner.NumericsChange("gmm", "relax", "a bias fixed"),))
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
    # a study-wide bump ("*") applies to every estimator of that study only
    monkeypatch.setattr(runner, "NUMERICS_CHANGES", (runner.NumericsChange("sbn", "*", "x"),))
    assert runner.numerics_version("sbn", "nvil") == 2 and runner.numerics_version("gmm", "nvil") == 1


def test_a_change_that_does_not_invalidate_keeps_old_cells_in_the_tables(tmp_path, monkeypatch):
    """A numerics change with ``invalidates=False`` (the measurement stream) gives new keys, but the cells of the
    older version stay valid: not stale, in the table, until a successor supersedes them."""
    monkeypatch.setattr(runner, "NUMERICS_CHANGES", ())
    store = Store(str(tmp_path))
    old = cell("ws")
    old_key = old.key()
    write(store, old, 1.0)
    monkeypatch.setattr(runner, "NUMERICS_CHANGES", (runner.NumericsChange("*", "*", "stream", invalidates=False),))
    new = cell("ws")
    new_key = new.key()
    assert new_key != old_key and new.config()["numerics_version"] == 2
    assert store.stale_keys() == set() and list(store.table().value) == [1.0]
    write(store, new, 2.0)
    assert list(store.table().value) == [2.0]
    # a later invalidating change makes the older version stale (the oldest is superseded already)
    monkeypatch.setattr(runner, "NUMERICS_CHANGES", (runner.NumericsChange("*", "*", "stream", invalidates=False),
                                                     runner.NumericsChange("gmm", "ws", "a bias fixed")))
    assert runner.numerics_version("gmm", "ws") == 3 and store.stale_keys() == {new_key}


def test_the_current_versions():
    """Every cell moved to a new version with the measurement stream; the older per-estimator changes add up."""
    assert runner.numerics_version("gmm", "reinforce") == 2 and runner.numerics_version("gmm", "relax") == 3
    assert runner.numerics_version("sbn", "nvil") == 3 and runner.numerics_version("rbm", "ws") == 2
    assert not runner.numerics_stale("gmm", "reinforce", 1) and runner.numerics_stale("gmm", "relax", 1)
    assert not runner.numerics_stale("gmm", "relax", 2)


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
