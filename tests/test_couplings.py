"""Minibatch couplings: exact OT is the optimal permutation, class-wise OT never mixes classes."""

import itertools

import pytest
import torch

from difflab.couplings import couple, pair_cost


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("seed", range(5))
def test_exact_coupling_is_the_brute_force_optimal_permutation(seed):
    x0 = torch.randn(6, 3, generator=gen(seed))
    z = torch.randn(6, 3, generator=gen(seed + 100))
    j = couple(x0, z, "exact")
    assert sorted(j.tolist()) == list(range(6))  # a permutation
    cost = pair_cost(x0, z)
    best = min(sum(float(cost[i, p[i]]) for i in range(6)) for p in itertools.permutations(range(6)))
    assert sum(float(cost[i, j[i]]) for i in range(6)) == pytest.approx(best, rel=1e-12)


def test_exact_coupling_lowers_the_cost_and_sinkhorn_lies_between():
    x0 = torch.randn(256, 2, generator=gen(1)) + torch.tensor([3.0, 0.0])
    z = torch.randn(256, 2, generator=gen(2))
    cost = pair_cost(x0, z)
    mean_cost = {m: float(cost[torch.arange(256), couple(x0, z, m, generator=gen(3), reg=0.01)].mean())
                 for m in ("independent", "exact", "sinkhorn")}
    assert mean_cost["exact"] < mean_cost["sinkhorn"] < mean_cost["independent"]
    # a large regulariser makes the entropic plan nearly independent
    wide = float(cost[torch.arange(256), couple(x0, z, "sinkhorn", reg=100.0, generator=gen(4))].mean())
    assert wide > 0.9 * mean_cost["independent"]


def test_classwise_coupling_never_pairs_across_classes():
    labels = torch.randint(0, 4, (200,), generator=gen(5))
    x0 = torch.randn(200, 2, generator=gen(6)) + labels[:, None].float() * 3
    z = torch.randn(200, 2, generator=gen(7))
    for method in ("exact", "sinkhorn", "independent"):
        j = couple(x0, z, method, labels=labels, generator=gen(8))
        assert bool((labels[j] == labels).all()), method  # slot j carries the label of the example drawn for it
    src = labels[torch.randperm(200, generator=gen(9))]  # a labelled source in another order
    j = couple(x0, z, "exact", labels=labels, source_labels=src)
    assert bool((src[j] == labels).all()) and sorted(j.tolist()) == list(range(200))


def test_coupling_input_errors():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="equal size"):
        couple(x, torch.randn(5, 2))
    with pytest.raises(ValueError, match="unknown coupling"):
        couple(x, x, "optimal")
    with pytest.raises(ValueError, match="equal counts per class"):
        couple(x, x, labels=torch.tensor([0, 0, 1, 1]), source_labels=torch.tensor([0, 1, 1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        couple(x, torch.full((4, 2), float("nan")))
