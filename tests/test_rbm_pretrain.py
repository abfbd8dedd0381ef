"""The RBM-prior paper's two-stage pretraining (harness/pretrain.py) and its place in the RBM study.

Model ``rbm_vae_tiny`` (4 + 4 latents, 7×7 images, exact log Z), two replicates (seeds 0, 1), batches of
24 embedded training images drawn by RBMTask from torch seed 0; every outcome is deterministic."""
import pytest
import torch

from estibench.harness import pretrain as pretraining
from estibench.harness.runner import Cell, build_model
from estibench.studies.rbm.task import RBMTask


def task_for(model_name="rbm_vae_tiny", study_options=None, **model_options):
    torch.manual_seed(0)
    model = build_model(model_name, seeds=(0, 1), **model_options)
    cell = Cell(study="rbm", model=model_name, estimator="vimco", particles=5, seeds=(0, 1), iterations=10,
                model_options=model_options, estimator_options={}, batch_size=24, lr=1e-3, eval_every=5,
                study_options={"eval_points": 50, "test_points": 50, **(study_options or {})})
    return model, cell


def codes(model, x):
    with torch.no_grad():
        return (pretraining.encode(model, x, noise=False) >= 0.5).to(model.dtype)


def code_log_likelihood(model, z):
    """Exact mean log p(z) of the codes under the RBM (log Z by enumeration), per replicate."""
    with torch.no_grad():
        return (model.log_prior_unnormalised(z) - model.log_partition().unsqueeze(-1)).mean(-1)


def test_soft_binarisation_is_the_papers_eq_3():
    e = torch.tensor([-2.0, -0.5, 0.25, 1.0, 1.5, 3.0])
    assert torch.equal(pretraining.soft_binarise(e, noise=False), torch.tensor([0.0, 0.0, 0.25, 1.0, 1.0, 1.0]))
    torch.manual_seed(0)
    noisy = pretraining.soft_binarise(e.expand(10000, -1))
    assert (noisy[:, 0] == 0).all() and (noisy[:, -1] == 1).all()  # outside (−½, 1½): binary whatever the noise
    assert abs(float(noisy[:, 2].mean()) - 0.25 - 0.5 * 0.0) < 0.05  # U(−½, ½) noise, clamped


@pytest.mark.parametrize("options", [{"groups": 1}, {"groups": 2}, {"latent_bits": 6, "rbm_hidden": 5}], ids=str)
def test_each_stage_does_its_job(options):
    """Stage 1 raises the reconstruction log-likelihood (last tenth of 300 Adam steps against the first) and
    leaves most codes binary under B; stage 2 (100 CD steps, k from 1 to 25, then 100 PCD-25 steps) raises the
    exact log-likelihood of the fixed codes under the RBM by more than 0.3 nat per replicate (the initial RBM
    is nearly uniform) and leaves the persistent chains 2,500 sweeps further on.  Measured (groups=1):
    reconstruction −17.0 → −14.8; code log-likelihood −5.55 → −4.66 nat (6 visible + 5 hidden: −4.16 →
    −3.71 / −3.62)."""
    model, cell = task_for(**options)
    task = RBMTask(model, cell)
    out = pretraining.pretrain(model, task.train_batch, 1e-3, ae_steps=300)
    assert (out["ae_last"] > out["ae_first"] + 1.0).all(), out
    assert (out["ae_binary"] > 0.1).all(), out
    x = task.train[:500].expand(2, -1, -1)
    z = codes(model, x)
    before = code_log_likelihood(model, z)
    encoder = [p.detach().clone() for p in model.encoders.parameters()]
    chain_steps = int(model.chains.steps)
    seen = []
    gibbs = model.rbm.gibbs
    model.rbm.gibbs = lambda v, sweeps=1, generator=None: (seen.append(int(sweeps)), gibbs(v, sweeps, generator))[1]
    pretraining.pretrain(model, task.train_batch, 1e-3, cd_steps=100, pcd_steps=100)
    del model.rbm.gibbs
    assert seen[0] == 1 and seen[99] == 25 and sorted(seen[:100]) == seen[:100]  # CD-1 → CD-25
    assert seen[100:] == [25] * 100 and int(model.chains.steps) == chain_steps + 2500  # PCD-25, persistent
    assert all(torch.equal(a, b) for a, b in zip(encoder, model.encoders.parameters()))  # stage 2 trains the RBM only
    after = code_log_likelihood(model, z)
    assert (after > before + 0.3).all(), (before, after)


def test_the_task_pretrains_when_asked_and_refuses_impossible_settings():
    steps = {"pretrain_ae_steps": 20, "pretrain_cd_steps": 5, "pretrain_pcd_steps": 5}
    model, cell = task_for(study_options=steps)
    initial = [p.detach().clone() for p in model.decoder.parameters()]
    task = RBMTask(model, cell)
    assert not all(torch.equal(a, b) for a, b in zip(initial, model.decoder.parameters()))
    names = {r[2] for r in task.evaluate(model, _vimco(model), 0)}
    assert {"pretrain_ae_first", "pretrain_ae_last", "pretrain_ae_binary", "log_z"} <= names
    with pytest.raises(ValueError, match="0 or more"):
        RBMTask(*task_for(study_options={"pretrain_cd_steps": -1}))
    with pytest.raises(ValueError, match="for RBM priors"):
        RBMTask(*task_for("sbn_tiny", study_options=steps, latent_bits=4))


def _vimco(model):
    from estibench import estimators
    return estimators.get("vimco").bind(model)


def test_the_suite_lays_out_both_papers_tables_and_a_paper_preset():
    """The rbm suite's parts: DVAE++ Table 2's four columns (RBM with overlapping and spike smoothing on
    rbm_vae; directed SBNs with the joint and marginal ELBO), the RBM-prior paper's ELU 200 + 400 model with
    and without pretraining, and a paper preset at the published settings for every part."""
    from estibench.studies.rbm import STUDY
    suite = STUDY.suites["rbm"]
    parts = suite.resolved_parts()
    keys = {(p.model, e, p.estimator_options.get(e, {}).get("elbo", "joint"),
             bool(p.study_options.get("pretrain_ae_steps")), p.model_options.get("arch"))
            for p in parts for e in p.estimators}
    assert ("rbm_vae", "overlap_exp", "joint", False, None) in keys and ("rbm_vae", "spike_exp", "joint", False, None) in keys
    assert ("sbn", "overlap_exp", "marginal", False, None) in keys and ("sbn", "overlap_exp", "joint", False, None) in keys
    assert ("rbm_vae", "vimco", "joint", True, "elu") in keys and ("rbm_vae", "vimco", "joint", False, "elu") in keys
    assert ("rbm_vae", "contrastive_rws", "joint", True, "elu") in keys
    paper = suite.presets["paper"]
    assert len(suite.resolved_parts(paper)) == len(paper.parts)
    for merged in suite.resolved_parts(paper):
        assert merged.model_options["dataset"] == "mnist-static", merged
        assert merged.iterations == 1_000_000
        if merged.model == "rbm_vae":
            assert merged.model_options["chains"] == 1000 and merged.study_options["final_particles"] == (4000,)
            assert set(merged.estimators) & {"vimco", "contrastive_rws"} == set() or merged.particles == (50,)
