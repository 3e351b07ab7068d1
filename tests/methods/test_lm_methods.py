"""LM unlearning through ``ob.unlearn``: the causal-LM adapter, each method's loss sign and reference
handling, the stopping rules, bad input, and the per-sequence evaluation, on a seconds-sized GPT."""

import functools
import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import obliviate as ob  # noqa: E402
from obliviate.lm import TextDataset, tiny_gpt2, train_tokenizer  # noqa: E402
from obliviate.lm import evaluate as lme  # noqa: E402
from obliviate.lm.train import train  # noqa: E402
from obliviate.methods.base import Context  # noqa: E402
from obliviate.objectives import CausalLMTask  # noqa: E402

T = 24
_g = np.random.default_rng(0)
SECRETS = [
    f"The code of {a}{b} is {_g.integers(10**5):05d}."
    for a in ("Ka", "Lo", "Mi", "Nu", "Pe", "Ro")
    for b in ("dan", "ver", "sil", "tor", "mek")
]


@functools.lru_cache(maxsize=1)
def _setup():
    """20 secrets memorized by a 1 x 64 GPT (5 forgotten), 10 unseen twins, ~4 s."""
    secrets = SECRETS
    filler = [f"Some plain words number {i} go here." for i in range(20)]
    tok = train_tokenizer(secrets + filler, vocab_size=300)
    seen, unseen = secrets[:20], secrets[20:]
    data = TextDataset.from_texts(tok, seen + filler, T, weights=[5.0] * 20 + [1.0] * 20)
    held = TextDataset.from_texts(tok, unseen, T)
    model = tiny_gpt2(len(tok), layers=1, width=64, heads=2, context=T, seed=0, eos_token_id=tok.eos_token_id)
    train(model, data, steps=300, batch_size=16, lr=1e-2, seed=0, progress=False)
    split = ob.ForgetSplit.from_ids(len(data), [0, 1, 2, 3, 4])
    return tok, model, data, held, split


def run(method, **kw):
    tok, model, data, held, split = _setup()
    return ob.unlearn(model, data, split, method, val=held, task=CausalLMTask(tok), progress=False, **kw)


def test_the_fixture_memorizes_and_the_adapter_scores_per_sequence():
    tok, model, data, held, split = _setup()
    seen = lme.sequence_scores(model, split.forget_set(data))
    unseen = lme.sequence_scores(model, held)
    assert seen.ma.mean() > 0.8 > 0.6 > unseen.ma.mean()
    # extraction: greedy completion of the code given its prompt (only the code's tokens are scored)
    codes = [t.split(" is ") for t in SECRETS]
    probe = TextDataset.from_texts(
        tok, [" " + c for _, c in codes], T, prompts=[p + " is" for p, _ in codes], eos=False
    )
    extracted = lme.sequence_scores(model, probe).extracted
    assert extracted[:20].mean() >= 0.6 and not extracted[20:].any()
    task = ob.objectives.task_for(model, data)
    assert isinstance(task, CausalLMTask)
    batch = next(iter(task.batches(data, 4)))[1]
    logits = task.logits(model, batch)
    # avgNLL x scored tokens == −summed log-likelihood; MA equals the evaluation's score
    n_tok = (batch[2][:, 1:] != -100).sum(1)
    assert torch.allclose(task.losses(logits, batch) * n_tok, -task.logprob(logits, batch), atol=1e-4)
    assert torch.allclose(
        task.correct(logits, batch),
        torch.tensor(lme.sequence_scores(model, data.subset(torch.arange(4))).ma),
        atol=1e-6,
    )


def test_trimmed_batches_give_the_same_outputs_as_full_rows():
    tok, model, data, _, _ = _setup()
    task = CausalLMTask()
    rows = torch.arange(6)
    full = (data.ids[rows], data.mask[rows], data.labels[rows])
    trimmed = next(iter(task.batches(data.subset(rows), 6)))[1]
    assert trimmed[0].shape[1] < T
    with torch.no_grad():
        assert torch.allclose(
            task.losses(task.logits(model, full), full), task.losses(task.logits(model, trimmed), trimmed), atol=1e-5
        )


def test_prompt_tokens_are_not_scored_and_long_rows_are_refused():
    tok = _setup()[0]
    ds = TextDataset.from_texts(tok, [" 12345"], T, prompts=["The code of Kadan is"], eos=False)
    scored = ds.labels[0] != -100
    assert scored.sum() == len(tok(" 12345")["input_ids"]) and not scored[:3].any()
    with pytest.raises(ValueError, match="longer than the context"):
        TextDataset.from_texts(tok, ["word " * 40], T)
    assert TextDataset.from_texts(tok, ["word " * 40], T, truncate=True).mask.all()
    model = tiny_gpt2(len(tok), layers=1, width=16, heads=2, context=8)
    with pytest.raises(ValueError, match="longer than the model's context"):
        CausalLMTask().check(model, TextDataset.from_texts(tok, ["a b"], T))


@pytest.mark.parametrize("method", ["ga", "grad-diff", "ga-kl", "npo", "simnpo", "sga", "rmu"])
def test_one_step_raises_the_forget_loss_and_leaves_the_caller_model_alone(method):
    tok, model, data, held, split = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = run(method, max_steps=10 if method == "rmu" else 1, stop="none", lr=3e-3)  # rmu moves activations first
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    forget = split.forget_set(data)
    nll = lambda m: float(lme.sequence_scores(m, forget).nll.mean())  # noqa: E731
    assert nll(res.model) > nll(model), method
    assert res.method == method and res.seconds > 0 and res.params["max_steps"] == (10 if method == "rmu" else 1)


def test_npo_starts_at_2_log2_over_beta_and_its_first_gradient_is_ascent_on_the_sequence_likelihood():
    tok, model, data, held, split = _setup()
    npo = ob.methods.get("npo")(beta=0.1)
    task = CausalLMTask(tok)
    forget = split.forget_set(data)
    work = ob.methods.base.frozen_copy(model).requires_grad_(True)
    ctx = Context(
        task=task,
        train=data,
        split=split,
        retain=split.retain_set(data),
        forget=forget,
        original=ob.methods.base.frozen_copy(model),
        device=torch.device("cpu"),
        seed=0,
        generator=torch.Generator(),
    )
    npo.setup(work, ctx)
    rows, batch = next(iter(task.batches(forget, 5)))
    logits = task.logits(work, batch)
    per_seq = npo.forget_losses(work, logits, batch, rows, ctx)
    assert torch.allclose(per_seq, torch.full((5,), 2 / 0.1 * math.log(2)), atol=1e-3)  # π_θ = π_ref
    g_npo = torch.autograd.grad(per_seq.mean(), work.transformer.wte.weight, retain_graph=True)[0]
    g_ga = torch.autograd.grad(task.logprob(logits, batch).mean(), work.transformer.wte.weight)[0]
    assert torch.allclose(g_npo, g_ga, atol=1e-5)  # d/dr of −(2/β) log σ(−βr) is 1 at r = 0
    # ga-kl's retain term is KL(original ‖ model): zero while the model is the original, positive after a change
    gakl = ob.methods.get("ga-kl")()
    assert float(gakl.retain_loss(work, batch, ctx)) == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        work.transformer.wte.weight.add_(0.05 * torch.randn_like(work.transformer.wte.weight))
    assert float(gakl.retain_loss(work, batch, ctx)) > 1e-3
    # simnpo is reference-free: its loss depends on the model's own length-normalised likelihood only
    sim = ob.methods.get("simnpo")()
    mean_logp = -task.losses(logits, batch)
    expect = -2 / 4.5 * torch.nn.functional.logsigmoid(-4.5 * mean_logp)
    assert torch.allclose(sim.forget_losses(work, logits, batch, rows, ctx), expect)


def test_stopping_rules_aggregate_leaves_outliers_sequence_does_not():
    tok, model, data, held, split = _setup()
    gamma = 0.5
    agg = run("ga", stop="aggregate", gamma=gamma, lr=1e-3, max_steps=60)
    seq = run("sga", stop="sequence", gamma=gamma, lr=1e-3, max_steps=60, grad_clip=1.0)
    forget = split.forget_set(data)
    ma_agg, ma_seq = lme.sequence_scores(agg.model, forget).ma, lme.sequence_scores(seq.model, forget).ma
    assert ma_agg.mean() <= gamma and agg.history[-1]["stopped_by_rule"]
    assert ma_seq.max() <= gamma and seq.history[-1]["final_above_gamma"] == 0
    # the free in-loop check agrees with a separate evaluation
    assert seq.history[-1]["final_ma_max"] == pytest.approx(float(ma_seq.max()), abs=1e-6)


def test_sga_per_sequence_option_only_ascends_on_sequences_still_above_gamma():
    res = run("sga", stop="sequence", gamma=0.5, lr=1e-3, max_steps=60, grad_clip=1.0)
    steps = [h for h in res.history if "forget_active" in h]
    assert steps[0]["forget_active"] == 5
    assert all(h["forget_active"] == h["above_gamma"] or h["step"] == 0 for h in steps[1:] if "forget_loss" in h)


def test_sga_and_tau_defaults_are_the_released_configs_and_stop_sequence_is_ours():
    # experiments/configs/{sga,tau}_config: lr 5e-5, batch 8, mem_threshold 0.70, ma_threshold 0.33,
    # 150 epochs; tau also first_threshold 0.5, first_coef -1
    for name in ("sga", "tau"):
        p = ob.methods.get(name)().params
        assert (p.lr, p.batch_size, p.max_epochs, p.max_steps, p.grad_clip) == (5e-5, 8, 150, None, None)
        assert (p.stop, p.gamma, p.mem_threshold, p.refresh) == ("aggregate", 0.33, 0.70, "epoch")
    tau = ob.methods.get("tau")().params
    assert (tau.order, tau.first_threshold, tau.first_coef) == ("released", 0.5, -1.0)
    ours = ob.methods.get("sga")(stop="sequence").params
    assert (ours.gamma, ours.mem_threshold, ours.refresh, ours.selective) == (None, None, "step", True)
    assert ob.methods.get("tau")(order="ta-sga").params.mem_threshold is None


class _Spy:
    """Records, per step, which forget rows the loss gradient reaches and every row's MA at the start
    of the step's epoch, measured independently of the loop (``sequence_scores`` on the live model)."""

    def __init__(self, per_epoch: int):
        self.per_epoch, self.calls, self.epoch_ma, self.steps = per_epoch, 0, None, []

    def record(self, model, logits, batch, rows, per_seq, ctx):
        if self.calls % self.per_epoch == 0:  # no update yet this epoch: the weights the refresh scored
            self.epoch_ma = torch.tensor(lme.sequence_scores(model, ctx.forget).ma)
        self.calls += 1
        step = {"rows": rows.tolist(), "epoch_ma": self.epoch_ma[rows], "step_ma": ctx.task.correct(logits, batch)}
        per_seq.register_hook(lambda g: step.__setitem__("used", (g != 0).tolist()))
        self.steps.append(step)


def _spied(base, per_epoch):
    spy = _Spy(per_epoch)

    class Spied(base):
        def forget_losses(self, model, logits, batch, rows, ctx):
            per_seq = super().forget_losses(model, logits, batch, rows, ctx)
            spy.record(model, logits.detach(), batch, rows, per_seq, ctx)
            return per_seq

        def finish(self, model, ctx):
            spy.theta = {k: v.detach().clone() for k, v in model.named_parameters()}
            spy.switched = ctx.state.get("switched")
            return super().finish(model, ctx)

    return Spied, spy


def _released_choice(ma, thr):
    chosen = ma >= thr
    chosen[int(np.argmax(ma.numpy()))] = True  # first of the most memorized
    return chosen.tolist()


def test_sga_ascends_on_rows_above_mem_threshold_plus_each_batchs_most_memorized_scored_once_per_epoch():
    from obliviate.methods.sga import SGA

    tok, model, data, _, split = _setup()
    cls, spy = _spied(SGA, per_epoch=3)  # 5 forget rows in batches of 2
    ob.unlearn(
        model,
        data,
        split,
        cls(batch_size=2, mem_threshold=0.86, lr=1e-3, max_epochs=8),
        task=CausalLMTask(tok),
        progress=False,
    )
    assert len(spy.steps) == 24
    left_out = argmax_only = per_step_differs = 0
    for st in spy.steps:
        assert st["used"] == _released_choice(st["epoch_ma"], 0.86), st
        left_out += not all(st["used"])
        argmax_only += sum(st["used"]) == 1 and bool((st["epoch_ma"] < 0.86).all())
        per_step_differs += _released_choice(st["step_ma"], 0.86) != st["used"]
    # the cases exist: rows are left out, a batch with nothing above the threshold still ascends on its
    # most memorized row, and selecting from each step's own scores would have chosen differently
    assert left_out and argmax_only and per_step_differs


def test_sga_stops_at_the_first_epoch_whose_mean_ma_is_below_the_threshold():
    res = run("sga", gamma=0.63, batch_size=2, lr=1e-3)
    epochs = [h["forget_ma_mean"] for h in res.history if "epoch" in h]
    final = res.history[-1]
    assert final["stopped_by_rule"] and final["steps"] == 3 * len(epochs)  # checked at epoch ends only
    assert len(epochs) > 1 and epochs[-1] < 0.63 and all(m >= 0.63 for m in epochs[:-1])
    assert final["final_ma_mean"] == pytest.approx(epochs[-1], abs=1e-6)
    assert final["final_ma_max"] > 0.63  # the aggregate rule: outliers stay above it


def test_tau_switches_from_selective_ascent_to_task_arithmetic_below_first_threshold():
    from obliviate.methods.tau import TAU

    tok, model, data, _, split = _setup()
    cls, spy = _spied(TAU, per_epoch=1)  # 5 forget rows, batches of 8: one step per epoch
    res = ob.unlearn(model, data, split, cls(lr=1e-3), task=CausalLMTask(tok), progress=False)
    h = res.history
    switch = next(i for i, r in enumerate(h) if "switch" in r)  # logged by the refresh of the epoch after it
    epochs_before = [r["forget_ma_mean"] for r in h[: switch + 2] if "epoch" in r]
    assert epochs_before[-1] == h[switch]["forget_ma_mean"] < 0.5 and all(m >= 0.5 for m in epochs_before[:-1])
    steps = [r for r in h if "forget_loss" in r]
    before, after = steps[: len(epochs_before)], steps[len(epochs_before) :]
    assert before and after
    assert all(r["forget_loss"] < 0 for r in before)  # ascent on −NLL, selective
    assert all(r["forget_loss"] > 0 and r["forget_active"] == 5 for r in after)  # descent on every row
    # the ascent phase is SGA as released, step for step
    sga = run("sga", lr=1e-3, max_epochs=len(epochs_before))
    assert [r["forget_ma_mean"] for r in sga.history if "epoch" in r] == pytest.approx(epochs_before, abs=1e-6)
    # returned: θ_s − (θ_ft − θ_s), the model the stopping rule scored (mean MA < 0.33), not θ_ft
    theta_s, theta_ft = spy.switched, spy.theta
    for k, v in res.model.named_parameters():
        assert torch.allclose(v, 2 * theta_s[k] - theta_ft[k], atol=1e-6), k
    final = h[-1]
    assert final["stopped_by_rule"] and final["final_ma_mean"] < 0.33
    assert final["final_ma_mean"] == pytest.approx([r for r in h if "epoch" in r][-1]["forget_ma_mean"], abs=1e-6)
    forget = split.forget_set(data)
    ft = ob.methods.base.frozen_copy(res.model)
    with torch.no_grad():
        for k, v in ft.named_parameters():
            v.copy_(theta_ft[k])
    assert lme.sequence_scores(ft, forget).ma.mean() > 0.33


def test_task_vector_picks_the_smallest_lambda_meeting_the_rule():
    res = run("task-vector", gamma=0.5, ft_steps=5, lr=3e-3)
    final = res.history[-1]
    assert final["rule_met"]
    trials = [h for h in res.history if "above_gamma" in h]
    passing = [t["lambda"] for t in trials if t["above_gamma"] == 0]
    assert final["lambda"] == min(passing)
    assert all(t["above_gamma"] > 0 for t in trials if t["lambda"] < final["lambda"])


def test_idk_teaches_the_refusal_and_rmu_updates_only_its_parameter_subset():
    tok, model, data, held, split = _setup()
    res = run("idk", max_steps=20, stop="none", lr=3e-3)
    from obliviate.methods.idk import refusal_rows

    refusals = refusal_rows(split.forget_set(data), tok, "I don't know.")
    assert lme.sequence_scores(res.model, refusals).nll.mean() < lme.sequence_scores(model, refusals).nll.mean() / 2
    rmu = run("rmu", max_steps=3, stop="none", lr=3e-3)
    changed = {k for k, v in rmu.model.state_dict().items() if not torch.equal(v, model.state_dict()[k])}
    assert changed and all(".mlp." in k for k in changed)


def test_bad_input_gets_clear_errors():
    tok, model, data, held, split = _setup()
    with pytest.raises(ValueError, match="threshold"):
        ob.unlearn(model, data, split, "sga", stop="sequence", task=CausalLMTask(tok), progress=False)  # no val
    with pytest.raises(ValueError, match="written for"):
        ob.unlearn(model, data, split, "scrub", progress=False)
    with pytest.raises(ValueError, match="stop must be"):
        run("ga", stop="sometimes")
    with pytest.raises(ValueError):
        ob.ForgetSplit.from_ids(len(data), [])
    with pytest.raises(ValueError, match="tokenizer"):
        ob.unlearn(model, data, split, "idk", val=held, progress=False)


def test_lm_methods_are_deterministic_and_their_results_reload(tmp_path):
    for method in ("npo", "tau"):
        kw = {"max_steps": 3, "gamma": 0.5}
        a, b = run(method, **kw), run(method, **kw)
        assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    a.save(tmp_path / "r")
    back = ob.UnlearningResult.load(
        tmp_path / "r", model=tiny_gpt2(len(_setup()[0]), layers=1, width=64, heads=2, context=T)
    )
    assert back.method == "tau" and all(
        torch.equal(v, back.model.state_dict()[k]) for k, v in a.model.state_dict().items()
    )


def test_evaluation_metrics_on_constructed_cases():
    # memorization-distribution attack: forget scores far from the unseen median on either side are found
    held = np.linspace(0.3, 0.5, 50)
    assert lme.memorization_mia(np.full(20, 0.95), held)["auc"] > 0.99
    assert lme.memorization_mia(np.full(20, 0.0), held)["auc"] > 0.99
    assert lme.memorization_mia(np.linspace(0.3, 0.5, 20), held)["auc"] < 0.65
    # truth ratio: P(perturbed)/P(paraphrased) from mean NLLs; KS p-value of identical samples is 1
    para = lme.SequenceScores(*(np.zeros(3),) * 7)
    para.nll = np.array([1.0, 2.0, 3.0])
    pert = [lme.SequenceScores(*(np.zeros(3),) * 7) for _ in range(2)]
    pert[0].nll, pert[1].nll = np.array([2.0, 2.0, 2.0]), np.array([4.0, 2.0, 2.0])
    assert np.allclose(lme.truth_ratio(para, pert), np.exp([1 - 3, 2 - 2, 3 - 2]))
    assert lme.forget_quality(np.arange(10.0), np.arange(10.0)) == 1.0
    assert lme.forget_quality(np.zeros(30), np.ones(30)) < 1e-6
    assert lme.recovery(0.5, 0.0, 1.0) == 0.5 and lme.recovery(0.0, 0.0, 1.0) == 0.0
    counts = lme.per_sequence_report(np.array([0.9, 0.2, 0.35]), np.array([0.3, 0.4, 0.5]), np.array([0.1, 0.6, 0.2]))
    assert counts["max"]["above"] == 1 and counts["max"]["oracle_above"] == 1 and counts["mean"]["above"] == 1


def test_data_parallel_training_matches_one_process(tmp_path):
    """``ob.lm.train`` under 2 CPU processes (torchrun; accelerate reads its environment) equals one process."""
    import subprocess
    import sys

    script = tmp_path / "t.py"
    script.write_text(
        "import os, sys, torch\n"
        "from obliviate.lm import TextDataset, tiny_gpt2, train_tokenizer\n"
        "from obliviate.lm.train import train\n"
        "texts = [f'row {i} says {i * 7 % 13} and {i * 3}' for i in range(40)]\n"
        "tok = train_tokenizer(texts, 300)\n"
        "data = TextDataset.from_texts(tok, texts, 16)\n"
        "m = tiny_gpt2(len(tok), layers=1, width=32, heads=2, context=16, seed=0)\n"
        "log = train(m, data, steps=10, batch_size=8, lr=1e-3, seed=1, progress=False)\n"
        "if int(os.environ.get('RANK', '0')) == 0:\n"
        "    torch.save({'loss': log.loss, 'procs': log.processes}, sys.argv[1])\n"
    )
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(tmp_path / "one.pt")], check=True, env=env, timeout=120)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29561",
            str(script),
            str(tmp_path / "two.pt"),
        ],
        check=True,
        env=env,
        timeout=180,
        capture_output=True,
    )
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one["procs"] == 1 and two["procs"] == 2
    assert np.allclose(one["loss"], two["loss"], atol=1e-4)


def test_tau_keeps_the_original_gamma_across_its_stages():
    """γ is the *original*'s unseen-text level: TAU's SGA stage must not recalibrate it on the
    task-arithmetic model (whose held-out scores are lower)."""
    tok, model, data, held, split = _setup()
    res = run("tau", order="ta-sga", gamma_stat="max", ft_steps=3, max_steps=5)
    assert res.history[-1]["gamma"] == pytest.approx(float(lme.sequence_scores(model, held).ma.max()), abs=1e-6)


def test_lm_demo_rejects_unknown_methods_and_parameters_before_training():
    from typer.testing import CliRunner

    from obliviate.cli import app

    for spec, needle in (("x=nosuch", "unknown method"), ("x=ga:lrr=1", "has no parameter"), ("x=", "expected")):
        out = CliRunner().invoke(app, ["lm-demo", "--method", spec, "--out", "/nonexistent/never-written"])
        assert out.exit_code == 2 and needle in out.output, out.output


def test_registry_lists_methods_by_modality():
    lm = {"ga", "grad-diff", "ga-kl", "npo", "simnpo", "sga", "task-vector", "tau", "idk", "rmu", "undo"}
    assert set(ob.methods.available("lm")) == lm | {"none", "retrain"}
    classification = set(ob.methods.available("classification"))
    # the LM loop methods run on classifiers with LM defaults and list under "lm" only; UNDO is written
    # for both (its base method is the modality's own)
    assert classification & lm == {"undo"} and {"scrub", "neggrad+", "rum", "none", "retrain"} <= classification
    assert classification | lm | set(ob.methods.available("diffusion")) == set(ob.methods.available())
