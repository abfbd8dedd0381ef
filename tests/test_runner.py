"""The vectorised runner: reproducibility, independence of replicates, agreement with single runs."""
import pytest
from scipy.stats import mannwhitneyu

from estibench.harness.definitions import MEASUREMENTS
from estibench.harness.runner import Cell, train_cell
from estibench.studies import TASKS

SMALL = {"test_points": 20, "grad_std_samples": 3, "exact_samples": 5}


def cell(**kw):
    base = dict(study="gmm", model="gmm", estimator="ww", particles=2, seeds=(0, 1), iterations=20,
                eval_every=10, study_options=SMALL, device="cpu")
    base.update(kw)
    return Cell(**base)


def final(result, metric):
    last = max(i for _, i, m, _ in result.rows if m == metric)
    return {s: v for s, i, m, v in result.rows if m == metric and i == last}


def test_same_cell_reproduces_the_same_numbers():
    a = train_cell(cell(), TASKS["gmm"])
    b = train_cell(cell(), TASKS["gmm"])
    strip = lambda rows: [r for r in rows if r[2] not in MEASUREMENTS]
    assert strip(a.rows) == strip(b.rows)
    metrics = {m for _, _, m, _ in a.rows}
    assert {"model_error", "inference_error", "grad_std_phi", "log_px", "kl_qp", "kl_pq",
            "sec_per_iter", "exact_grad/bias_sq"} <= metrics


def test_cell_key_is_a_hash_of_the_config():
    assert cell().key() == cell().key()
    assert cell().key() == cell(device="cuda").key()  # where it ran is not part of the identity
    assert cell().key() != cell(particles=3).key()
    assert cell(estimator="concrete").label() == "concrete"
    assert cell(estimator="dww", estimator_options={"delta": 0.1}).label() == "dww[delta=0.1]"


def test_vectorised_replicates_match_single_runs_in_distribution():
    """8 stacked replicates against 8 separate single runs with the same seeds (WW, K = 5,
    300 iterations): the final model and inference errors of the two groups are exchangeable —
    two-sided Mann–Whitney U, α = 0.01 per metric — and the replicates differ from each other."""
    n, its = 8, 300
    kw = dict(particles=5, iterations=its, eval_every=its)
    stacked = train_cell(cell(seeds=tuple(range(n)), **kw), TASKS["gmm"])
    singles = [train_cell(cell(seeds=(s,), **kw), TASKS["gmm"]) for s in range(n)]
    for metric in ("model_error", "inference_error"):
        a = list(final(stacked, metric).values())
        b = [list(final(r, metric).values())[0] for r in singles]
        assert mannwhitneyu(a, b, alternative="two-sided").pvalue > 0.01, metric
        assert len(set(a)) == n  # replicates did not collapse onto one trajectory


def test_estimator_schedule_reaches_the_final_temperature():
    from estibench.harness.runner import build
    c = cell(estimator="concrete", iterations=5, eval_every=5)
    _, est = build(c)
    est.set_progress(1.0)
    assert est.temperature == pytest.approx(0.5)
    est.set_progress(0.0)
    assert est.temperature == pytest.approx(3.0)


def test_a_task_that_is_not_a_task_subclass_is_refused_in_one_line_before_any_work():
    """The runner calls only the hooks ``harness.task.Task`` declares; a duck-typed object is refused."""
    class Duck:  # has the hooks but not the contract
        def __init__(self, model, cell):
            raise AssertionError("built: the refusal came too late")

        def train_batch(self):
            raise AssertionError

    with pytest.raises(TypeError) as info:
        train_cell(cell(iterations=2, eval_every=1), Duck)
    assert str(info.value) == "a study's task must subclass estibench.harness.task.Task; got Duck"


def test_every_registered_task_is_a_task_and_the_optional_hooks_have_defaults():
    from estibench.harness.task import Task

    class Minimal(Task):
        def train_batch(self):
            return None

        def evaluate(self, model, estimator, iteration, extra=None):
            return []

    assert all(issubclass(factory, Task) for factory in TASKS.values())
    t = Minimal(model=None, cell=cell(study_options={"x": 1}))
    assert t.options == {"x": 1} and t.final_evaluate(None, None, 0) == [] and t.final_artifacts(None) is None
    assert t.observe([]) is None and t.basket is None
    with pytest.raises(TypeError):
        type("NoEvaluate", (Task,), {"train_batch": lambda self: None})(None, cell())
