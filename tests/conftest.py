import os

import pytest
import torch
from hypothesis import settings

import difflab as dl

torch.set_num_threads(2)

# In CI the property-based tests draw the same examples every run (a red CI is then reproducible).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

def pytest_report_header(config):
    """Which CPU kernels PyTorch chose (ATEN_CPU_CAPABILITY can cap them: `./dev test` runs the stored-result tests
    again on AVX2)."""
    return f"torch {torch.__version__}, CPU kernels: {torch.backends.cpu.get_cpu_capability()}"


ALL_PATHS = {
    "VP": lambda: dl.paths.VP(),
    "ConstantVP": lambda: dl.paths.ConstantVP(8.0),
    "SubVP": lambda: dl.paths.SubVP(),
    "Cosine": lambda: dl.paths.Cosine(),
    "VE": lambda: dl.paths.VE(),
    "Linear": lambda: dl.paths.Linear(),
    "Linear(sigma_min)": lambda: dl.paths.Linear(0.1),
    "DiscreteVP.linear": lambda: dl.paths.DiscreteVP.linear(1000),
    "DiscreteVP.cosine": lambda: dl.paths.DiscreteVP.cosine(200),
    "DiscreteVE.geometric": lambda: dl.paths.DiscreteVE.geometric(10, 0.01, 5.0),
}


@pytest.fixture(params=list(ALL_PATHS))
def any_path(request):
    return ALL_PATHS[request.param]()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mixture() -> dl.oracles.GaussianMixture:
    """Three unequal 2-D components, one with a full (rotated) covariance, unequal weights."""
    means = [[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0]]
    covs = [[[0.25, 0.0], [0.0, 0.25]], [[0.5, 0.3], [0.3, 0.4]], [[0.1, 0.0], [0.0, 0.3]]]
    return dl.oracles.GaussianMixture(means, covariances=covs, weights=[0.5, 0.3, 0.2])


test_mixture.__test__ = False
