"""Muon: Newton-Schulz orthogonalisation against an SVD, the update against a float64 reference, AdamW groups against
torch's AdamW, matrices only in Muon groups, and the groups muon_param_groups builds."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cadence.optim import HyperParameterScheduler, Muon, muon_param_groups, param_groups
from cadence.optim.muon import default_ns_dtype, newton_schulz
from cadence.schedule import Cosine

from .conftest import small_cnn


def orthogonalise_by_svd(M: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """NS_steps(M) computed another way: with X_0 = M / (|M|_F + 1e-7) = U diag(s) V^T, each step
    X <- aX + (bA + cA^2)X, A = XX^T, is U diag(a s + b s^3 + c s^5) V^T, so the iteration acts on the
    singular values alone and keeps the singular vectors."""
    a, b, c = 3.4445, -4.7750, 2.0315  # the reference's quintic, written out rather than imported
    U, s, Vh = torch.linalg.svd(M / (torch.linalg.norm(M) + 1e-7), full_matrices=False)
    for _ in range(steps):
        s = a * s + b * s ** 3 + c * s ** 5
    return U @ torch.diag(s) @ Vh


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (96, 40)])
def test_newton_schulz_equals_the_quintic_on_the_singular_values(shape):
    M = torch.randn(*shape, dtype=torch.float64)
    O = newton_schulz(M, 5, torch.float64)
    torch.testing.assert_close(O, orthogonalise_by_svd(M), rtol=0, atol=1e-10)
    # near-orthogonal: every singular value driven into roughly [0.7, 1.2], U V^T's within 0.35
    S = torch.linalg.svdvals(O)
    assert S.min() > 0.5 and S.max() < 1.5
    U, _, Vh = torch.linalg.svd(M, full_matrices=False)
    assert torch.linalg.norm(O - U @ Vh) / torch.linalg.norm(U @ Vh) < 0.35


def paper_muon(params, use_muon, grads, lr, mu, wd, adamw_lr, betas, eps, steps=5):
    """Muon (Nesterov) for the parameters marked ``use_muon`` and AdamW for the rest, in float64, orthogonalising
    by SVD."""
    theta = [p.detach().double().clone() for p in params]
    B = [torch.zeros_like(t) for t in theta]
    m = [torch.zeros_like(t) for t in theta]
    v = [torch.zeros_like(t) for t in theta]
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            g = g.double()
            if use_muon[i]:
                B[i] = mu * B[i] + (1 - mu) * g
                M = (1 - mu) * g + mu * B[i]
                O = orthogonalise_by_svd(M.reshape(M.size(0), -1), steps).view_as(theta[i])
                rows, cols = theta[i].size(0), theta[i][0].numel()
                theta[i] = theta[i] * (1 - lr * wd) - lr * max(1.0, rows / cols) ** 0.5 * O
            else:
                theta[i] = theta[i] * (1 - adamw_lr * wd)
                m[i] = betas[0] * m[i] + (1 - betas[0]) * g
                v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
                m_hat, v_hat = m[i] / (1 - betas[0] ** t), v[i] / (1 - betas[1] ** t)
                theta[i] = theta[i] - adamw_lr * m_hat / (v_hat.sqrt() + eps)
    return theta


def test_matches_the_reference_in_float64_over_real_gradients(real_gradients):
    """Hidden matrices (the convolutions, the first linear layer) by Muon; the head, gains and biases by AdamW."""
    torch.manual_seed(0)
    model = small_cnn().double()
    params = list(model.parameters())
    head = set(map(id, model[-1].parameters()))
    use_muon = [p.ndim >= 2 and id(p) not in head for p in params]
    grads = real_gradients[:60]
    expected = paper_muon(params, use_muon, grads, 0.02, 0.95, 0.01, 1e-3, (0.8, 0.9), 1e-7)
    opt = Muon([{"params": [p for p, u in zip(params, use_muon) if u]},
                {"params": [p for p, u in zip(params, use_muon) if not u], "use_muon": False}],
               weight_decay=0.01, betas=(0.8, 0.9), eps=1e-7, adamw_lr=1e-3, ns_dtype=torch.float64)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.double().clone()
        opt.step()
    diff = max((p.detach() - e).abs().max().item() for p, e in zip(params, expected))
    assert diff / max(e.abs().max().item() for e in expected) < 1e-12  # float64 rounding (measured: 2e-15)


def test_an_adamw_group_steps_as_torchs_adamw_with_its_own_hyper_parameters(real_gradients):
    """An AdamW group's lr, betas, eps and weight decay are its own; the Muon group's settings do not reach it."""
    torch.manual_seed(0)
    a = small_cnn()
    b = copy.deepcopy(a)
    muon = Muon([{"params": a[0].parameters()},
                 {"params": a[-1].parameters(), "use_muon": False, "lr": 2e-3, "betas": (0.8, 0.99), "eps": 1e-6,
                  "weight_decay": 0.1}], lr=0.05, betas=(0.5, 0.5), eps=1.0, weight_decay=0.0)
    adamw = torch.optim.AdamW(b[-1].parameters(), lr=2e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    for gs in real_gradients[:50]:
        for model, opt in ((a, muon), (b, adamw)):
            for p, g in zip(model.parameters(), gs):
                p.grad = g.clone()
            opt.step()
    for p, q in zip(a[-1].parameters(), b[-1].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert muon.param_groups[1]["lr"] == 2e-3 and "lr_multiplier" not in muon.param_groups[1]


def test_an_adamw_group_without_a_rate_runs_at_adamw_lr_and_a_schedule_of_lr_keeps_the_ratio():
    matrix, bias = nn.Parameter(torch.ones(3, 2)), nn.Parameter(torch.ones(3))
    muon = Muon([{"params": [matrix]}, {"params": [bias], "use_muon": False, "lr_multiplier": 0.5}], lr=0.02,
                adamw_lr=3e-4)
    assert [g["lr"] for g in muon.param_groups] == pytest.approx([0.02, 1.5e-4])
    assert muon.param_groups[1]["lr_multiplier"] == pytest.approx(0.5 * 3e-4 / 0.02)
    HyperParameterScheduler(muon, {"lr": Cosine(0.02, 100)}).step(50)
    assert [g["lr"] for g in muon.param_groups] == pytest.approx([0.01, 0.75e-4])
    with pytest.raises(ValueError, match=r"^Muon: lr=0 with AdamW groups at adamw_lr=0.0003"):
        Muon([{"params": [matrix]}, {"params": [bias], "use_muon": False}], lr=0.0)


@pytest.mark.parametrize("group, message", [
    ({"params": [nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(3))]},
     r"^Muon: parameter 1 of group 0 has shape \[3\], and Muon updates weight matrices \(2 or more dimensions\) "
     r"only; expected it in a group with use_muon=False, which AdamW updates \(muon_param_groups\(model\) builds "
     r"both kinds\)$"),
    ({"params": [nn.Parameter(torch.ones(3))], "names": ["fc.bias"]}, r"^Muon: parameter 'fc.bias' has shape \[3\]"),
])
def test_a_parameter_that_is_not_a_matrix_is_refused_in_a_muon_group(group, message):
    with pytest.raises(ValueError, match=message):
        Muon([group])


def test_use_muon_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^Muon: use_muon=None in group 0; expected True"):
        Muon([{"params": [nn.Parameter(torch.ones(2, 2))], "use_muon": None}])


class TinyLanguageModel(nn.Module):
    """An embedding, a hidden block (a norm, two linear layers) and a head: what muon_param_groups tells apart."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(11, 8)
        self.norm = nn.LayerNorm(8)
        self.hidden = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
        self.head = nn.Linear(8, 11)


def kinds(groups):
    """Each group's kind, weight decay and parameter names, in a fixed order."""
    return sorted((g["use_muon"], g["weight_decay"], sorted(g["names"])) for g in groups)


def test_muon_param_groups_give_hidden_matrices_to_muon_and_embeddings_head_and_vectors_to_adamw():
    model = TinyLanguageModel()
    groups = muon_param_groups(model)
    by_id = {id(p): n for n, p in model.named_parameters()}
    assert [(g["use_muon"], sorted(by_id[id(p)] for p in g["params"])) for g in groups] == [
        (True, ["hidden.0.weight", "hidden.2.weight"]),
        (False, ["embedding.weight", "head.bias", "head.weight", "hidden.0.bias", "hidden.2.bias", "norm.bias",
                 "norm.weight"])]
    # decay groups refined: each keeps its weight decay and names; the model tells the embedding and head apart
    refined = muon_param_groups(param_groups(model, 0.1), model)
    assert kinds(refined) == [(False, 0.0, ["embedding.weight", "head.bias", "hidden.0.bias", "hidden.2.bias",
                                            "norm.bias", "norm.weight"]),
                              (False, 0.1, ["head.weight"]), (True, 0.1, ["hidden.0.weight", "hidden.2.weight"])]
    # without the model only the number of dimensions tells
    assert kinds(muon_param_groups(param_groups(model, 0.1)))[-1] == (True, 0.1, ["head.weight", "hidden.0.weight",
                                                                                  "hidden.2.weight"])
    # a group that says use_muon itself is left as it is
    mine = {"params": [model.head.weight], "use_muon": True}
    assert muon_param_groups([mine]) == [mine]
    Muon(groups)  # and Muon takes them


def test_a_tied_head_is_the_embeddings_and_a_model_ending_in_a_norm_has_no_head():
    model = TinyLanguageModel()
    model.head.weight = model.embedding.weight
    muon = {id(p) for g in muon_param_groups(model) if g["use_muon"] for p in g["params"]}
    assert muon == {id(model.hidden[0].weight), id(model.hidden[2].weight)}
    ends_in_norm = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    assert [len(g["params"]) for g in muon_param_groups(ends_in_norm)] == [1, 3]


def test_training_lowers_the_loss(train, mnist_batches):
    def loss(model):
        with torch.no_grad():
            return sum(nn.functional.cross_entropy(model(x), y).item() for x, y in mnist_batches[-20:])

    torch.manual_seed(0)
    before = loss(small_cnn())
    after = loss(train(lambda p: Muon(muon_param_groups(p), lr=0.02), steps=100))
    assert after < 0.5 * before


def test_state_dict_resume_is_bit_identical(real_gradients):
    torch.manual_seed(0)
    a = small_cnn()
    b = copy.deepcopy(a)
    oa, ob = Muon(muon_param_groups(a)), Muon(muon_param_groups(b))
    for step, gs in enumerate(real_gradients[:12]):
        if step == 6:
            ob = Muon(muon_param_groups(b))
            ob.load_state_dict(copy.deepcopy(saved))
        for model, opt in ((a, oa), (b, ob)):
            for p, g in zip(model.parameters(), gs):
                p.grad = g.clone()
            opt.step()
        if step == 5:
            saved = copy.deepcopy(oa.state_dict())
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_cpu_parameters_iterate_in_float32_unless_told(real_gradients):
    """bfloat16 matrix products are several times slower than float32 on CPUs without bf16 units."""
    assert default_ns_dtype(torch.device("cpu")) == torch.float32
    assert default_ns_dtype(torch.device("cuda")) == torch.bfloat16
    torch.manual_seed(0)
    a = small_cnn()
    b, c = copy.deepcopy(a), copy.deepcopy(a)
    optimizers = ((a, Muon(muon_param_groups(a))), (b, Muon(muon_param_groups(b), ns_dtype=torch.float32)),
                  (c, Muon(muon_param_groups(c), ns_dtype=torch.bfloat16)))
    for gs in real_gradients[:3]:
        for model, opt in optimizers:
            for p, g in zip(model.parameters(), gs):
                p.grad = g.clone()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


@pytest.mark.parametrize("kwargs, message", [
    ({"momentum": 1.0}, r"Muon: momentum=1.0 is out of range; expected momentum in \[0, 1\)"),
    ({"ns_steps": 0}, r"Muon: ns_steps=0 is out of range; expected ns_steps >= 1"),
    ({"lr": -0.1}, r"Muon: lr=-0.1 is out of range"),
    ({"betas": (0.9, 1.2)}, r"Muon: betas\[1\]=1.2 is out of range"),
    ({"adamw_lr": -1.0}, r"Muon: adamw_lr=-1.0 is out of range; expected adamw_lr >= 0"),
])
def test_bad_hyper_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Muon([nn.Parameter(torch.ones(2, 2))], **kwargs)


def test_a_fractional_step_count_is_refused():
    with pytest.raises(TypeError, match=r"Muon: ns_steps=2.5 is a float; expected an integer"):
        Muon([nn.Parameter(torch.ones(2, 2))], ns_steps=2.5)
