"""Categorical diffusion against exact answers: matrix identities, Bayes' rule, the exact law of each
sampler's output (propagated by enumeration over every state), the bound of an exact model."""

import itertools
import math

import numpy as np
import pytest
import torch

from difflab import discrete as dd
from difflab.discrete.paths import _columns

F64 = torch.float64


def paths(T=8):
    return [dd.Uniform(3, steps=T), dd.Absorbing(3, steps=T), dd.Masked(3), dd.Multinomial(3, steps=T),
            dd.DiscretizedGaussian(3, steps=T), dd.Uniform(4, steps=T, schedule="linear"),
            dd.Absorbing(4, steps=T, schedule="cosine"), dd.DiscretizedGaussian(4, steps=T, schedule="mutual_information")]


def random_joint(K, D, seed=0, labels=0):
    g = torch.Generator().manual_seed(seed)
    shape = ((labels,) if labels else ()) + (K,) * D
    table = torch.rand(shape, generator=g, dtype=F64) ** 3  # far from factorised
    table = table / (table.reshape(labels, -1).sum(-1).reshape((-1,) + (1,) * D) if labels else table.sum())
    return dd.Joint(table, labels=bool(labels))


def t64(x):
    return torch.tensor(x, dtype=F64)


def chain_law(denoiser, path, D, ts, **cond):
    """The exact law of the ancestral chain's output over all K^D data states, by enumeration."""
    S, K = path.num_states, path.num_classes
    states = torch.tensor(list(itertools.product(range(S), repeat=D)))
    law = path.prior()[states].prod(-1)
    for t, s in zip(ts[:-1], ts[1:]):
        probs = denoiser(states, torch.full((len(states),), float(t), dtype=F64), **cond)
        R = path.reverse(states, s, t, probs.double())  # (M, D, S)
        law = law @ R[:, torch.arange(D)[None, :], states].prod(-1)
    data = (states < K).all(1)
    assert float(law[~data].abs().sum()) < 1e-12  # nothing stays masked at t = 0
    keep = states[data]
    order = (keep * K ** torch.arange(D - 1, -1, -1)).sum(1)
    out = torch.zeros(K ** D, dtype=F64)
    out[order] = law[data]
    return out


# --- the matrices -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [p for p in paths() if p.discrete], ids=repr)
def test_q_bar_is_the_product_of_the_one_step_matrices(path):
    T, S = path.steps, path.num_states
    prod = torch.eye(S, dtype=F64)
    for i in range(1, T + 1):
        prod = prod @ path.transition(t64((i - 1) / T), t64(i / T))
        assert torch.allclose(prod, path.q_bar(t64(i / T)), atol=1e-13)
    # a skipped step is the product of the steps it skips
    assert torch.allclose(path.transition(t64(2 / T), t64(7 / T)),
                          torch.linalg.multi_dot([path.transition(t64(i / T), t64((i + 1) / T)) for i in range(2, 7)]), atol=1e-13)


@pytest.mark.parametrize("path", paths(), ids=repr)
def test_rows_are_distributions_and_the_prior_is_stationary(path):
    for t in [0.0, 0.3, 0.625, 1.0] if not path.discrete else [0.0, 3 / 8, 5 / 8, 1.0]:
        q = path.q_bar(t64(t))
        assert (q >= 0).all() and torch.allclose(q.sum(-1), torch.ones(path.num_states, dtype=F64), atol=1e-13)
    assert torch.allclose(path.q_bar(t64(0.0)), torch.eye(path.num_states, dtype=F64))
    step = path.transition(t64(0.5), t64(0.625 if not path.discrete else 5 / 8))
    assert torch.allclose(path.prior() @ step, path.prior(), atol=1e-13)
    if not isinstance(path, dd.DiscretizedGaussian):  # mixing paths reach the prior exactly at t = 1
        assert torch.allclose(path.q_bar(t64(1.0)), path.prior().expand(path.num_states, -1), atol=1e-12)


def test_discretized_gaussian_is_banded_symmetric_and_reaches_uniform():
    path = dd.DiscretizedGaussian(6, steps=1000)
    Q = path.transition(t64(0.1), t64(0.101))
    assert torch.allclose(Q, Q.T) and torch.allclose(Q.sum(0), torch.ones(6, dtype=F64))
    assert (Q[0, 1:].diff() < 0).all()  # nearer symbols are likelier
    assert (path.q_bar(t64(1.0)) - 1 / 6).abs().max() < 1e-6


@pytest.mark.parametrize("K", [2, 5, 8])
def test_mutual_information_schedule_falls_linearly(K):
    T = 50
    path = dd.DiscretizedGaussian(K, steps=T, schedule="mutual_information", beta_max=50.0)
    for i in range(T):  # I(x0; x_t) by enumeration of the joint (uniform x0): (1 - i / T) log K at every step
        joint = path.q_bar(t64(i / T)) / K
        by_hand = float((joint * (joint / (joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True))).log()).nan_to_num().sum())
        assert by_hand == pytest.approx((1 - i / T) * math.log(K), abs=1e-7)
    # the last step cannot reach 0 (no beta makes a step uniform): it takes beta_max and at least halves what is left
    assert path.betas[-1] == 50.0 and float(dd.mutual_information(path.q_bar(t64(1.0)))) < 0.5 * math.log(K) / T
    assert (path.betas.diff() >= -1e-9).all()  # each step mixes at least as much as the last
    # the steps are the matrices of those betas: the linear path with one beta reproduces a step
    i = 17
    one = dd.DiscretizedGaussian(K, steps=1, beta_min=float(path.betas[i]), beta_max=float(path.betas[i]))
    assert torch.allclose(path.transition(t64(i / T), t64((i + 1) / T)), one.q_bar(t64(1.0)), atol=1e-13)


def test_mutual_information_of_absorbing_linear_schedule_is_linear():
    """D3PM's remark: on an absorbing path the mutual-information schedule is a(t) = 1 - t (uniform x0)."""
    path = dd.Absorbing(4, steps=10)
    for i in range(11):
        joint = path.q_bar(t64(i / 10))[:4] / 4  # x0 is one of the 4 symbols, x_t one of 5 states
        mi = float((joint * (joint / (joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True))).log()).nan_to_num().sum())
        assert mi == pytest.approx((1 - i / 10) * math.log(4), abs=1e-12)


@pytest.mark.parametrize("path", [p for p in paths() if p.parameterization == "mixture"], ids=repr)
def test_posterior_is_bayes_rule_on_q_bar(path):
    S, K = path.num_states, path.num_classes
    s, t = (t64(2 / 8), t64(5 / 8))
    qs, qt, qst = path.q_bar(s), path.q_bar(t), path.transition(s, t)
    x0, xt = torch.meshgrid(torch.arange(K), torch.arange(S), indexing="ij")
    x0, xt = x0.reshape(-1, 1), xt.reshape(-1, 1)
    possible = qt[x0[:, 0], xt[:, 0]] > 0
    post = path.posterior(xt[possible], s, t, x0[possible])[:, 0]
    for row, a, b in zip(post, x0[possible, 0], xt[possible, 0]):
        bayes = qs[a] * qst[:, b] / qt[a, b]  # q(x_s | x0) q(x_t | x_s) / q(x_t | x0)
        assert torch.allclose(row.double(), bayes, atol=1e-12)
        assert abs(float(row.sum()) - 1) < 1e-12


def test_marginal_and_sample_follow_q_bar():
    path = dd.Uniform(5, steps=10)
    x0 = torch.full((40000, 1), 2)
    xt = path.sample(x0, 0.4, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(xt[:, 0], minlength=5).double() / len(xt)
    assert (freq - path.q_bar(t64(0.4))[2]).abs().max() < 0.01
    absorbing = dd.Absorbing(5, steps=10)
    xt = absorbing.sample(torch.randint(0, 5, (1000, 7)), 0.5, generator=torch.Generator().manual_seed(1))
    assert set(xt.unique().tolist()) <= set(range(6))


def test_categorical_never_draws_a_state_without_mass():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0]]).expand(20000, 5)
    x = dd.categorical(probs, torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) == {1, 3}
    assert abs(float((x == 1).double().mean()) - 0.5) < 0.02


# --- samplers: the exact law of their output ------------------------------------------------------

@pytest.mark.parametrize("path", [p for p in paths(6) if p.parameterization == "mixture"
                                  and not isinstance(p, dd.DiscretizedGaussian)], ids=repr)  # its prior: the test below
def test_factorised_data_is_reproduced_exactly_at_any_number_of_steps(path):
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.05, 0.15, 0.8], [1 / 3, 1 / 3, 1 / 3]], dtype=F64)
    if path.num_classes == 4:
        probs = torch.cat([probs * 0.9, torch.full((3, 1), 0.1, dtype=F64)], 1)
    oracle = dd.Factorised(probs)
    table = dd.Joint(torch.einsum("a,b,c->abc", *probs)).table
    for steps in ([1, 2, 6] if path.discrete else [1, 3, 50]):
        law = chain_law(oracle.denoiser(path), path, 3, path.times(steps))
        assert (law - table).abs().max() < 1e-12, steps


@pytest.mark.parametrize("path", [dd.Uniform(3, steps=1000), dd.Absorbing(3, steps=1000), dd.Masked(3)], ids=repr)
def test_correlated_joint_is_reproduced_as_steps_grow(path):
    joint = random_joint(3, 3)
    den = joint.denoiser(path)
    tv = [0.5 * float((chain_law(den, path, 3, path.times(n)) - joint.table).abs().sum()) for n in (4, 40, 1000)]
    assert tv[0] > tv[1] > tv[2] and tv[2] < 2e-3, tv  # factorised reverse steps: exact in the limit


def test_samples_follow_the_exact_chain_law():
    path, joint = dd.Absorbing(3, steps=10), random_joint(3, 3, seed=1)
    den = joint.denoiser(path)
    n = 40000
    law = chain_law(den, path, 3, path.times(10))
    x = dd.sample(den, path, (n, 3), generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(joint.index(x), minlength=27).double() / n
    # a multinomial's deviations: within 5 standard errors everywhere
    assert ((freq - law).abs() <= 5 * (law * (1 - law) / n).sqrt() + 1e-4).all()


def test_masked_sampler_caches_and_gives_the_same_samples():
    path, joint = dd.Masked(3), random_joint(3, 4, seed=2)
    den = joint.denoiser(path)
    a, info_a = dd.sample(den, path, (10, 4), steps=500, sampler="ancestral", generator=torch.Generator().manual_seed(3), return_info=True)
    b, info_b = dd.sample(den, path, (10, 4), steps=500, sampler="masked", generator=torch.Generator().manual_seed(3), return_info=True)
    assert torch.equal(a, b)
    assert info_a["nfe"] == 500 and info_b["nfe"] <= 41  # at most one evaluation per unmasking, and the first
    with pytest.raises(ValueError, match="absorbing"):
        dd.sample(den, dd.Uniform(3, steps=10), (2, 4), sampler="masked")


def test_skipping_steps_on_the_discretized_gaussian_path_uses_the_products():
    path = dd.DiscretizedGaussian(3, steps=12)
    oracle = dd.Factorised(torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=F64))
    # started from the true marginal at t = 1 (not the uniform prior), the chain is exact for any grid
    for steps in (1, 3, 12):
        ts = path.times(steps)
        S = 3
        states = torch.tensor(list(itertools.product(range(S), repeat=2)))
        start = (oracle.probs @ path.q_bar(t64(1.0)))
        law = start[torch.arange(2)[None, :], states].prod(-1)
        den = oracle.denoiser(path)
        for t, s in zip(ts[:-1], ts[1:]):
            R = path.reverse(states, s, t, den(states, torch.full((9,), float(t))))
            law = law @ R[:, torch.arange(2)[None, :], states].prod(-1)
        exact = oracle.probs[torch.arange(2)[None, :], states].prod(-1)
        assert (law - exact).abs().max() < 1e-12


def test_plug_in_reverse_is_exact_on_absorbing_paths_but_not_on_uniform_ones():
    probs = torch.tensor([[0.7, 0.2, 0.1]], dtype=F64)
    oracle = dd.Factorised(probs)
    for path, exact in [(dd.Multinomial(3, steps=20), False), (dd.Uniform(3, steps=20), True)]:
        law = chain_law(oracle.denoiser(path), path, 1, path.times())
        assert ((law - probs[0]).abs().max() < 1e-12) == exact
    plug = dd.Absorbing(3, steps=20)
    plug.parameterization = "plug_in"
    assert (chain_law(oracle.denoiser(plug), plug, 1, plug.times()) - probs[0]).abs().max() < 1e-12


# --- bounds --------------------------------------------------------------------------------------

def exact_bound(path, oracle, D):
    """E over the data of L_T + sum_i L_{i-1} + L_0, by enumeration over x0 and x_t (all states)."""
    K, S, T = path.num_classes, path.num_states, path.steps
    x0s = torch.tensor(list(itertools.product(range(K), repeat=D)))
    xts = torch.tensor(list(itertools.product(range(S), repeat=D)))
    p0 = oracle.table if isinstance(oracle, dd.Joint) else oracle.log_prob(x0s).exp()
    den = oracle.denoiser(path)
    total = torch.zeros(len(x0s), dtype=F64)
    total += dd.prior_term(path, x0s).double()
    for i in range(1, T + 1):
        s, t = t64((i - 1) / T), t64(i / T)
        pred = den(xts, torch.full((len(xts),), float(t)))
        rev = path.reverse(xts, s, t, pred.double())  # (M, D, S)
        qt = path.q_bar(t)
        for a, x0 in enumerate(x0s):
            w = qt[x0[None, :], xts].prod(-1)  # q(x_t | x0)
            ok = w > 0
            if i == 1:
                term = -torch.log(rev[ok][:, torch.arange(D), x0]).sum(-1)  # p(x0 | x_1)
            else:
                post = path.posterior(xts[ok], s, t, x0.expand(int(ok.sum()), D))
                term = dd.kl_categorical(post, rev[ok]).sum(-1)
            total[a] += (w[ok] * term).sum()
    return float(p0 @ total), p0


@pytest.mark.parametrize("path", [dd.Uniform(3, steps=6), dd.Absorbing(3, steps=6), dd.DiscretizedGaussian(3, steps=6)], ids=repr)
def test_bound_of_an_exact_model_is_the_entropy_plus_the_prior_term(path):
    oracle = dd.Factorised(torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], dtype=F64))
    bound, p0 = exact_bound(path, oracle, 2)
    qT = oracle.probs @ path.q_bar(t64(1.0))[:3]  # the marginal at t = 1, per position
    prior_kl = float(dd.kl_categorical(qT, path.prior()).sum())
    assert abs(bound - (oracle.entropy() + prior_kl)) < 1e-10
    # a correlated joint under factorised reverse steps: the bound lies above the entropy
    joint = random_joint(3, 2, seed=4)
    assert exact_bound(path, joint, 2)[0] > joint.entropy()


def test_one_sample_estimate_averages_to_the_bound():
    path, oracle = dd.Absorbing(3, steps=5), random_joint(3, 2, seed=5)
    bound, _ = exact_bound(path, oracle, 2)
    g = torch.Generator().manual_seed(0)
    x0 = oracle.sample(60000, g)
    est = dd.vb_loss(oracle.denoiser(path), path, x0, generator=g).double()
    assert abs(float(est.mean()) - bound) < 4 * float(est.std()) / math.sqrt(len(est))


def test_masked_bound_of_an_exact_model_is_the_entropy():
    """Continuous time, correlated data: the bound is tight (only one token unmasks at a time)."""
    path, joint = dd.Masked(3), random_joint(3, 3, seed=6)
    den = joint.denoiser(path)
    x0s, D = joint.states, 3
    patterns = torch.tensor(list(itertools.product([0, 1], repeat=D)), dtype=torch.bool)  # 1: masked
    nodes, weights = np.polynomial.legendre.leggauss(12)
    total = 0.0
    for u, wq in zip(nodes, weights):
        t = (u + 1) / 2
        alpha = 1 - t
        for m in patterns:
            xt = torch.where(m, torch.tensor(path.mask), x0s)
            prob = alpha ** int((~m).sum()) * (1 - alpha) ** int(m.sum())
            pred = path.restrict(xt, t, den(xt, torch.full((len(xt),), t, dtype=F64)))
            nll = -torch.log(torch.gather(pred, -1, x0s[..., None])[..., 0])[:, m].sum(1)
            total += wq / 2 * prob * float(joint.table @ nll) / t  # weight -alpha'/(1 - alpha) = 1/t
    assert abs(total - joint.entropy()) < 1e-9
    # and the loss estimates it without bias
    g = torch.Generator().manual_seed(1)
    x0 = joint.sample(40000, g)
    est = dd.masked_loss(den, path, x0, generator=g).double()
    assert abs(float(est.mean()) - joint.entropy()) < 4 * float(est.std()) / math.sqrt(len(est))


def test_hybrid_loss_adds_lambda_times_the_cross_entropy():
    path = dd.Uniform(4, steps=10)
    den = lambda x, t: torch.full((*x.shape, 4), 0.25)  # noqa: E731  a uniform guess: CE = log 4 per position
    x0 = torch.randint(0, 4, (16, 5), generator=torch.Generator().manual_seed(0))
    base = dd.d3pm_loss(den, path, x0, t=torch.full((16,), 3), generator=torch.Generator().manual_seed(1))
    hyb = dd.d3pm_loss(den, path, x0, lam=0.5, t=torch.full((16,), 3), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(hyb - base, torch.full((16,), 0.5 * 5 * math.log(4), dtype=hyb.dtype), atol=1e-5)


def test_classifier_free_guidance_on_one_masked_position_is_the_tilted_law():
    """One position, absorbing: the single unmasking uses the prediction at the all-masked state, so the
    output law is p(x | c)^(1 + w) / p(x)^w, normalised."""
    joint = random_joint(4, 1, labels=3)
    path = dd.Absorbing(4, steps=5)
    for w in (0.0, 1.5):
        law = chain_law(dd.classifier_free(joint.denoiser(path), w), path, 1, path.times(), label=torch.tensor(1))
        tilted = joint.tables[1] ** (1 + w) / joint.table ** w
        assert (law - tilted / tilted.sum()).abs().max() < 1e-12


# --- errors --------------------------------------------------------------------------------------

def test_clear_errors():
    path = dd.Absorbing(3, steps=10)
    with pytest.raises(ValueError, match="at most 10"):
        path.times(20)
    with pytest.raises(ValueError, match="integer tokens"):
        path.sample(torch.zeros(2, 3), 0.5)
    with pytest.raises(ValueError, match="0..2"):
        path.sample(torch.full((2, 3), 3), 0.5)
    with pytest.raises(ValueError, match="shape"):
        path.reverse(torch.zeros(2, 3, dtype=torch.long), 0.1, 0.2, torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="continuous"):
        dd.vb_loss(lambda x, t: x, dd.Masked(3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="absorbing"):
        dd.masked_loss(lambda x, t: x, dd.Uniform(3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="grid"):
        dd.DiscretizedGaussian(3, steps=10).q_bar(t64(0.55))
    with pytest.raises(ValueError, match="schedule"):
        dd.Uniform(3, schedule="nope")
    for p in (dd.Uniform(3, steps=10), dd.DiscretizedGaussian(3, steps=10)):
        with pytest.raises(ValueError, match="forward in time"):
            p.transition(t64(0.5), t64(0.2))


def test_a_network_driving_a_probability_into_denormals_keeps_finite_gradients():
    """The bound's gradient -q / p overflowed float32 for p ~ 1e-44 and the softmax's backward made it NaN
    (a uniform D3PM on Fashion-MNIST diverged so): the denoiser's softmax runs in float64."""
    path = dd.Uniform(4, steps=10)
    logits = torch.zeros(1, 2, 2, 4)
    logits[..., 0, 0] = -100.0  # the true x0 of the first position, exp(-100) ~ 4e-44
    logits.requires_grad_(True)
    den = dd.as_denoiser(lambda x_t, t: logits)
    loss = dd.d3pm_loss(den, path, torch.tensor([[[0, 1], [2, 3]]]), t=torch.tensor([1]), lam=0.01)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()
    assert float(loss.detach()) > 100 * 10  # T x -log p(x0 | x_1) of that position: the model pays for it


def test_float32_times_on_a_discrete_grid_are_accepted_and_off_grid_times_refused():
    """0.3 in float32 is 0.30000001: still step 300 of 1,000 (a few ulps of T), while t = 0.3004 is off the grid."""
    path = dd.DiscretizedGaussian(8, steps=1000)
    q32 = path.q_bar(torch.tensor([0.3]))
    q64 = path.q_bar(torch.tensor([0.3], dtype=torch.float64))
    assert torch.equal(q32, q64)
    with pytest.raises(ValueError, match="grid"):
        path.q_bar(torch.tensor([0.3004], dtype=torch.float64))
