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
