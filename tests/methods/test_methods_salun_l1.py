"""SalUn (hard and soft saliency masks) and l1-sparse: the mechanisms, not only the outcome."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import same_state, state_of

import obliviate as ob
from obliviate.methods.base import Context, frozen_copy
from obliviate.methods.l1_sparse import l1_gamma, l1_norm
from obliviate.methods.salun import frozen_outside, saliency, top_fraction_mask
from obliviate.methods.salun_soft import scaled_steps, soft_mask
from obliviate.objectives import ClassificationTask

TASK = ClassificationTask(10)


ACCS = ["forget_acc", "test_acc", "forgotten_class_test_acc"]


def accs(model, digits, split):
    return ob.evaluate(model, digits, split, metrics=ACCS[: 3 if split.classes else 2])


def run(original, digits, split, method, **kw):
    return ob.unlearn(original, digits.train, split, method=method, seed=0, progress=False, **kw)


def context(model, digits, split):
    return Context(
        task=TASK,
        train=digits.train,
        split=split,
        retain=split.retain_set(digits.train),
        forget=split.forget_set(digits.train),
        original=frozen_copy(model),
        device=torch.device("cpu"),
        seed=0,
        generator=torch.Generator().manual_seed(0),
    )


@pytest.fixture(scope="module")
def scores(digits, original, random_split):
    """The saliency SalUn computes for the random split at its default batch size (64)."""
    return saliency(original, context(original, digits, random_split), 64)


def test_saliency_is_the_summed_forget_ascent_gradient(digits, original, random_split, scores):
    model = copy.deepcopy(original)
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(saliency(model, context(model, digits, random_split), 64), scores, rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())  # autograd.grad: no .grad left behind
    forget = random_split.forget_set(digits.train)
    params = dict(original.named_parameters())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for _, (x, y) in TASK.batches(forget, 64):
        grads = torch.autograd.grad(-F.cross_entropy(original(x), y), list(params.values()))  # batch means
        for t, g in zip(total.values(), grads):
            t += g
    assert scores.keys() == params.keys()  # every tensor, biases included
    for n in params:
        torch.testing.assert_close(scores[n], total[n].abs())


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.7])
def test_mask_keeps_the_requested_fraction_of_the_largest_scores_globally(scores, fraction):
    mask = top_fraction_mask(scores, fraction)
    keep = torch.cat([m.flatten() for m in mask.values()])
    values = torch.cat([s.flatten() for s in scores.values()])
    assert keep.dtype == torch.bool and int(keep.sum()) == int(values.numel() * fraction)
    assert values[keep].min() >= values[~keep].max()
    # global, not per-layer: the salient share differs between tensors
    shares = [float(m.float().mean()) for m in mask.values()]
    assert max(shares) - min(shares) > 0.2


def test_salun_freezes_non_salient_weights_bit_for_bit(digits, original, random_split, scores):
    mask = top_fraction_mask(scores, 0.5)
    before = dict(original.named_parameters())
    res = run(original, digits, random_split, "salun")
    assert not res.diverged
    moved = []
    for n, p in res.model.named_parameters():
        assert torch.equal(p[~mask[n]], before[n][~mask[n]]), f"non-salient weights of {n} moved"
        moved.append((p[mask[n]] != before[n][mask[n]]).flatten())
    assert torch.cat(moved).float().mean() > 0.8  # nearly every salient weight was updated


def test_frozen_outside_masks_gradients_and_clears_momentum():
    """The hard-mask mechanics: frozen coordinates get zero gradient (so clipping ignores them),
    zero momentum, and their original value after every step; nothing remains once it exits."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    ref = frozen_copy(model)
    mask = {"weight": torch.rand(3, 4) > 0.5, "bias": torch.tensor([True, False, True])}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    refs = dict(ref.named_parameters())
    with frozen_outside(model, opt, mask, ref):
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 4)).square().sum().backward()
            for n, p in model.named_parameters():
                assert torch.all(p.grad[~mask[n]] == 0) and torch.all(p.grad[mask[n]] != 0)
            opt.step()
            for n, p in model.named_parameters():
                buf = opt.state[p]["momentum_buffer"]
                assert torch.all(buf[~mask[n]] == 0) and torch.all(buf[mask[n]] != 0)
                assert torch.equal(p[~mask[n]], refs[n][~mask[n]]) and not torch.equal(p[mask[n]], refs[n][mask[n]])
    opt.zero_grad()
    model(torch.randn(8, 4)).square().sum().backward()
    assert all(torch.all(p.grad != 0) for p in model.parameters())


def test_scaled_steps_scale_each_weights_step_even_under_adam():
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    plain, scaled = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    scaled.load_state_dict(plain.state_dict())
    start = {n: p.detach().clone() for n, p in plain.named_parameters()}
    scale = {"weight": torch.rand(3, 4), "bias": torch.tensor([0.0, 0.5, 1.0])}
    for model, ctx in ((plain, None), (scaled, scale)):
        opt = torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=0.1)
        opt.zero_grad()
        model(x).square().sum().backward()
        if ctx is None:
            opt.step()
        else:
            with scaled_steps(model, opt, ctx):
                opt.step()
    for n, p in scaled.named_parameters():
        full = dict(plain.named_parameters())[n] - start[n]
        torch.testing.assert_close(p - start[n], scale[n] * full)
    assert scaled.bias[0] == start["bias"][0] and scaled.bias[2] == plain.bias[2]  # exact at 0 and 1


def test_salun_invariant_holds_with_adam_weight_decay_and_a_budget_stop(digits, original, random_split):
    """Adam moments and weight decay would move frozen weights without the restore step; a run
    stopped by its time budget mid-epoch must still leave them untouched."""
    mask = top_fraction_mask(saliency(original, context(original, digits, random_split), 64), 0.3)
    before = dict(original.named_parameters())
    res = run(
        original,
        digits,
        random_split,
        "salun",
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.1,
        threshold=0.3,
        epochs=500,
        budget=0.3,
    )
    assert "budget" in " ".join(res.notes)
    for n, p in res.model.named_parameters():
        assert torch.equal(p[~mask[n]], before[n][~mask[n]])
        assert not torch.equal(p[mask[n]], before[n][mask[n]])
    assert not res.model._backward_hooks and all(not p._backward_hooks for p in res.model.parameters())


def test_salun_freezes_conv_weights_too(digits, recipe, random_split):
    cnn = ob.train(recipe.replace(architecture="cnn", arch_kwargs={}, epochs=1), digits.train, seed=0, progress=False)
    mask = top_fraction_mask(saliency(cnn, context(cnn, digits, random_split), 64), 0.5)
    res = run(cnn, digits, random_split, "salun")
    before = dict(cnn.named_parameters())
    assert any(p.dim() == 4 for p in before.values())
    for n, p in res.model.named_parameters():
        assert torch.equal(p[~mask[n]], before[n][~mask[n]])
    assert not same_state(state_of(res.model), state_of(cnn))


@pytest.mark.parametrize("method", ["salun", "salun-soft", "l1-sparse"])
def test_class_forgetting_removes_the_class(method, digits, original, class_split):
    res = run(original, digits, class_split, method)
    before, after = accs(original, digits, class_split), accs(res.model, digits, class_split)
    assert before["forget_acc"] > 0.95
    assert after["forget_acc"] <= 0.05
    assert after["forgotten_class_test_acc"] <= 0.1
    assert after["test_acc"] > before["test_acc"] - 0.03  # test excludes the forgotten class


@pytest.mark.parametrize("method", ["salun", "salun-soft", "l1-sparse"])
def test_random_forgetting_raises_forget_loss_and_keeps_test_accuracy(method, digits, original, random_split):
    forget = random_split.forget_set(digits.train)
    res = run(original, digits, random_split, method)

    def loss(m):
        return float(F.cross_entropy(*TASK.predict(m, forget)))

    assert loss(res.model) > loss(original)
    assert accs(res.model, digits, random_split)["test_acc"] > accs(original, digits, random_split)["test_acc"] - 0.03


def test_soft_mask_is_one_above_the_cutoff_and_proportional_below(scores):
    soft = torch.cat([m.flatten() for m in soft_mask(scores, 0.5).values()])
    hard = torch.cat([m.flatten() for m in top_fraction_mask(scores, 0.5).values()])
    values = torch.cat([s.flatten() for s in scores.values()])
    assert torch.all(soft[hard] == 1)
    below = ~hard & (values < values[hard].min())
    tau = values[hard].min()
    torch.testing.assert_close(soft[below], values[below] / tau)
    assert soft[below].max() < 1 and soft.min() >= 0


def test_salun_soft_moves_weights_in_proportion_to_saliency(digits, original, random_split, scores):
    soft = soft_mask(scores, 0.5)
    before = dict(original.named_parameters())
    soft_res = run(original, digits, random_split, "salun-soft")
    hard_res = run(original, digits, random_split, "salun")
    m = torch.cat([soft[n].flatten() for n in before])
    delta = torch.cat([(p - before[n]).abs().flatten() for n, p in soft_res.model.named_parameters()])
    hard_delta = torch.cat([(p - before[n]).abs().flatten() for n, p in hard_res.model.named_parameters()])
    assert torch.all(delta[m == 0] == 0)  # zero saliency: bit-identical
    low, mid = (m > 0) & (m < 0.2), (m >= 0.2) & (m < 1)
    assert low.sum() > 100 and mid.sum() > 100
    assert delta[low].mean() < delta[mid].mean() < delta[m == 1].mean()
    # unlike the hard mask, below-cutoff weights do move
    assert (delta[mid] > 0).float().mean() > 0.8 and torch.all(hard_delta[m < 1] == 0)


def test_l1_gamma_schedule():
    assert l1_gamma(0.01, 0, 3, 1) == 0.01
    assert l1_gamma(0.01, 1, 3, 1) == pytest.approx(0.005)
    assert l1_gamma(0.01, 1.999, 3, 1) == pytest.approx(0.01 * 0.0005)
    assert l1_gamma(0.01, 2, 3, 1) == 0 and l1_gamma(0.01, 2.5, 3, 1) == 0
    assert l1_gamma(0.01, 9.5, 10, 0) == pytest.approx(0.0005)


def test_l1_sparse_shrinks_the_weights_and_switches_l1_off_at_the_end(digits, original, random_split):
    res = run(original, digits, random_split, "l1-sparse", epochs=4, no_l1_epochs=2)
    plain = run(original, digits, random_split, "l1-sparse", epochs=4, no_l1_epochs=2, gamma=0.0)
    gammas = [h["l1_gamma"] for h in res.history]
    assert gammas[0] > gammas[1] > 0 and gammas[2] == gammas[3] == 0
    assert all(h["l1_gamma"] == 0 for h in plain.history)
    with torch.no_grad():
        l1, l1_plain, l1_original = (float(l1_norm(m)) for m in (res.model, plain.model, original))
    assert l1 < 0.8 * l1_plain and l1_plain > 0.95 * l1_original
    # no l1 in the last epochs: the ell-1 norm stops falling fast once gamma is 0
    norms = [h["l1_norm"] for h in res.history]
    assert norms[0] - norms[1] > 5 * abs(norms[2] - norms[3])


def test_l1_sparse_reads_only_the_retain_set(digits, original, class_split):
    poisoned = ob.datasets.ArrayDataset(digits.train.x.clone(), digits.train.y.clone())
    poisoned.x[class_split.forget_ids] = float("nan")
    a = ob.unlearn(original, digits.train, class_split, method="l1-sparse", progress=False)
    b = ob.unlearn(original, poisoned, class_split, method="l1-sparse", progress=False)
    assert same_state(state_of(a.model), state_of(b.model))


@pytest.mark.parametrize("method", ["salun", "salun-soft", "l1-sparse"])
def test_deterministic_finite_and_seed_dependent(method, digits, original, class_split):
    a, b = run(original, digits, class_split, method), run(original, digits, class_split, method)
    c = ob.unlearn(original, digits.train, class_split, method=method, seed=1, progress=False)
    assert same_state(state_of(a.model), state_of(b.model))
    assert not same_state(state_of(a.model), state_of(c.model))
    assert all(torch.isfinite(v).all() for v in a.model.state_dict().values())
    assert not a.diverged and len(a.history) == a.params["epochs"]


@pytest.mark.parametrize(
    "method, kwargs, message",
    [
        ("salun", {"threshold": 0.0}, "threshold must be in"),
        ("salun-soft", {"threshold": 1.5}, "threshold must be in"),
        ("l1-sparse", {"gamma": -1.0}, "gamma must be"),
        ("l1-sparse", {"epochs": 2, "no_l1_epochs": 2}, "no_l1_epochs must be"),
    ],
)
def test_bad_arguments_fail_before_work(method, kwargs, message, digits, original, random_split):
    with pytest.raises(ValueError, match=message):
        ob.unlearn(original, digits.train, random_split, method=method, **kwargs)
