"""Worker of ``benchmarks/gmm_budget.py``: times GMM training steps of the checkout it is started from.

    PYTHONPATH=CHECKOUT python CHECKOUT/benchmarks/_step_worker.py   (or this file, with CHECKOUT first on sys.path)

Line protocol on stdin/stdout: ``setup ESTIMATOR K R`` builds that cell's training step as ``train_cell`` of the
checkout on sys.path runs it (the GMM study's task for the batches; ``harness.runner.TrainingStep`` where the
checkout has it, else the loop body of its ``train_cell``, rebuilt below line for line), one torch thread, and
runs 10 warm-up steps, answering ``ok``; ``run N`` runs N steps of
the cell set up last and answers the seconds taken; ``eval`` times one evaluation of the GMM study's task
(``estibench.studies.gmm.task.GMMTask.evaluate``) and answers its seconds; ``where`` answers the file of the
``harness.runner`` it imported (the driver checks each worker runs its own checkout); ``quit`` ends.
"""
import os
import sys
import time

ITERATIONS = 100_000


def old_step(runner, model, estimator, task, K, optimiser, params):
    """``train_cell``'s loop body before ``TrainingStep`` existed (harness/runner.py at 0c25e87)."""
    import torch
    R, n = model.replicates, ITERATIONS
    first_bad = torch.full((R,), -1, dtype=torch.long, device=model.device)
    objective_sum = torch.zeros(R, device=model.device)

    def step(it):
        nonlocal first_bad
        estimator.set_progress((it - 1) / max(1, n - 1))
        model.set_progress((it - 1) / max(1, n - 1))
        x = task.train_batch()
        model_grads, own_grads, objective = estimator.gradients(model, x, K)
        grads = model_grads + own_grads
        ok = runner._finite_per_replicate(objective.detach(), grads, R)
        first_bad = torch.where((first_bad < 0) & ~ok, torch.full_like(first_bad, it), first_bad)
        for p, g in zip(params, grads):
            p.grad = g
        optimiser.step()
        objective_sum.add_(objective.detach())
    return step


def use_checkout_on_sys_path():
    """Import estibench from the checkout on ``PYTHONPATH`` only: setuptools' editable finder (a ``sys.meta_path``
    entry) answers any ``estibench.*`` name the checkout lacks with the installed checkout's module, so an old
    revision missing a module would silently run today's code instead of failing.  A checkout that adds no path at
    run time (no ``__path__`` addition in its ``estibench/__init__.py``) gets its names mapped onto its own folders
    (``estibench.X`` → ``X/``), as its own editable install would map them."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
    import estibench
    root = os.path.dirname(os.path.dirname(os.path.abspath(estibench.__file__)))
    if root not in estibench.__path__:
        estibench.__path__.append(root)


def main():
    use_checkout_on_sys_path()
    import torch
    torch.set_num_threads(1)
    from estibench.harness import runner
    from estibench.harness.runner import Cell, build, make_optimiser
    from estibench.studies import TASKS
    state = {}
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "setup":
            name, K, R = words[1], int(words[2]), int(words[3])
            cell = Cell(study="gmm", model="gmm", estimator=name, particles=K, seeds=tuple(range(R)),
                        iterations=ITERATIONS, eval_every=1000, device="cpu")
            torch.manual_seed(0)
            model, est = build(cell, torch.device("cpu"))
            task = TASKS["gmm"](model, cell)
            params, own = list(model.parameters()), list(est.parameters())
            optimiser = make_optimiser(params, cell.lr, own, est.own_lr_multiplier, cell.optimiser)
            if hasattr(runner, "TrainingStep"):
                step = runner.TrainingStep(model, est, task, K, ITERATIONS, optimiser, params + own)
            else:
                step = old_step(runner, model, est, task, K, optimiser, params + own)
            for it in range(1, 11):
                step(it)
            state.update(model=model, est=est, step=step, task=task, it=10)
            print("ok", flush=True)
        elif words[0] == "run":
            n = int(words[1])
            step, first = state["step"], state["it"] + 1
            start = time.perf_counter()
            for it in range(first, first + n):
                step(it)
            print(time.perf_counter() - start, flush=True)
            state["it"] += n
        elif words[0] == "eval":
            model, est, task = state["model"], state["est"], state["task"]
            start = time.perf_counter()
            task.evaluate(model, est, 1000)
            print(time.perf_counter() - start, flush=True)
        elif words[0] == "where":
            print(runner.__file__, flush=True)
        elif words[0] == "quit":
            return


if __name__ == "__main__":
    main()
