import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

torch.set_num_threads(1)


@pytest.fixture
def rng():
    """Fix torch's global RNG for the test (and restore it afterwards)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


@pytest.fixture(params=["page-less", "with a page"])
def temporary_study(request):
    """A study registered for the test and removed after it (``tests/registered.py``): once without a page of its
    own (the site gives it the generic page) and once with one."""
    from registered import temporary_study as install
    from estibench import studies
    with install(page=request.param == "with a page") as study:
        assert study.name in studies.names()
        yield study
    assert study.name not in studies.names()
