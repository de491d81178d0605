"""Deep belief networks (issue 15): the restricted Boltzmann machine as a layer, `rbm`, and
greedy layer-wise pretraining by contrastive divergence, `train { pretrain = cd(...) }`.

In the network (fine-tuning, evaluation, prediction) an `rbm` is its hidden units'
probabilities given the visible ones, sigmoid(x W + c): a dense layer with a sigmoid, plus a
visible bias b that only pretraining and reconstructions use. Before step 0 of a fresh run,
`cd` trains each `rbm` in network order as an RBM (Hinton 2006; Hinton, "A Practical Guide to
Training Restricted Boltzmann Machines", UTML TR 2010-003), on its inputs as the network
computes them with the layers before it, the earlier rbms already pretrained; the train
section then fine-tunes the whole network by backpropagation (Hinton & Salakhutdinov 2006).

Which layers a pretrainer trains is the `pretrainable` trait of their entries; the condition
on their inputs (bernoulli visible units take values in [0, 1]) is the entry's
`needs.unit_interval`. compiler/rules.py checks both where the spec tells; the runtime checks
the inputs' range on the train split before pretraining (runtime/pretrain.py).
"""

from __future__ import annotations

from .core import Args, Needs, arg, registry
from .layers import LAYERS, WEIGHT_ARGS, Shape, need_rank
from .types import EnumT, NonNegFloat, PosFloat, PosInt, Rate

VISIBLE = ("bernoulli", "gaussian")


def _rbm_shape(a: Args, x: Shape) -> Shape:
    need_rank(x, 1, "rbm", "features")
    return (a.units,)


def _rbm_params(a: Args, x: Shape) -> int:
    need_rank(x, 1, "rbm", "features")
    return x[0] * a.units + a.units + x[0]


LAYERS.add(
    "rbm",
    example="rbm(4)",
    args=(
        arg("units", PosInt, doc="hidden units"),
        arg(
            "visible",
            EnumT(VISIBLE),
            "bernoulli",
            "bernoulli: visible units in [0, 1] (pixels scaled by `normalize = minmax`, or the "
            "probabilities of an rbm below); gaussian: real-valued visible units of unit "
            "variance, for inputs standardized by `normalize = standardize`",
        ),
        *WEIGHT_ARGS,
    ),
    shape=_rbm_shape,
    params=_rbm_params,
    traits=frozenset({"pretrainable", "unit_range"}),
    needs=Needs(unit_interval=("visible", "bernoulli")),
    known_as=("BernoulliRBM", "RBM"),
    doc="restricted Boltzmann machine (Smolensky 1986; Hinton 2002): in the network, the hidden "
    "units' probabilities given the input, a vector [in] -> [units]; `train.pretrain = cd(...)` "
    "learns W, c and b as an RBM before training (deep belief network: Hinton, Osindero & Teh "
    "2006). Parameters W [in, units] (`kernel`), hidden bias c [units] (`bias`), visible bias "
    "b [in] (`visible_bias`): in·units + units + in. b is read only by pretraining and the "
    "reconstructions; fine-tuning leaves it as pretraining left it (its gradient is 0; only "
    "`decay_all` would shrink it). `init` and `bias_init` initialize W and c (b starts at 0, "
    "and pretraining sets it from the data); `regularizer` and `constraint` act in "
    "fine-tuning (pretraining has its own `weight_decay`). Not pretrained, it is a dense layer "
    "with a sigmoid",
    formula="y = p(h = 1 | v = x) = sigmoid(x W + c);  reconstruction (pretraining): "
    "bernoulli: p(v = 1 | h) = sigmoid(h Wᵀ + b); gaussian (unit variance): E[v | h] = h Wᵀ + b",
)

# ------------------------------------------------------------------ pretraining

PRETRAINERS = registry(
    "pretrainer",
    "pretrainers",
    "Unsupervised layer-wise pretraining before step 0 (`train { pretrain = ... }`): each "
    "`pretrainable` layer in network order learns from its inputs as the network computes them "
    "(the layers before it, earlier ones already pretrained, in evaluation mode), on the train "
    "split after `normalize`, without augmentation; then the train section fine-tunes the whole "
    "network. It runs on a fresh run only: `--resume` continues from the checkpoint, and the "
    "layers `init_from` loads are not pretrained (they are used as loaded).",
    implemented_in="dnn.runtime.pretrain",
)

PRETRAINERS.add(
    "cd",
    example="cd(epochs = 1)",
    args=(
        arg("k", PosInt, 1, "Gibbs steps of the negative phase (CD-k)"),
        arg("epochs", PosInt, 10, "passes over the train split, per layer"),
        arg(
            "lr",
            PosFloat,
            0.1,
            "learning rate eps (Hinton 2010 §4: 0.1 for binary units; gaussian visible units want "
            "one or two orders of magnitude less, §13.2)",
        ),
        arg("momentum", Rate, 0.5, "momentum alpha of the parameter increments (§9)"),
        arg("weight_decay", NonNegFloat, 2e-4, "L2 weight cost lambda on W (§10)"),
    ),
    aliases=("contrastive_divergence",),
    known_as=("CD", "ContrastiveDivergence"),
    doc="contrastive divergence (Hinton 2002), greedy and layer-wise (Hinton, Osindero & Teh "
    "2006), as Hinton's practical guide (2010) recommends: the hidden states of the data sampled "
    "(h⁰), the visible reconstructions and the last hidden step as probabilities, the "
    "statistics from probabilities; mini-batches of `train.batch_size` from the train split, "
    "reshuffled every epoch (whatever `data.shuffle` says); randomness from `train.seed`. "
    "Each epoch reports the "
    "reconstruction error, mean (v⁰ - v¹)² per value and example (v¹: the first "
    "reconstruction), to the terminal and pretrain.jsonl, and the run folder gets "
    "plots/rbm_reconstructions.png and plots/rbm_filters.png",
    formula="per mini-batch of N inputs v⁰ [N, in]: p⁰ = sigmoid(v⁰ W + c), h⁰ = [u⁰ < p⁰]; "
    "for t = 1..k: vᵗ = mean(hᵗ⁻¹), pᵗ = sigmoid(vᵗ W + c), hᵗ = [uᵗ < pᵗ] (t < k); "
    "mean(h) = sigmoid(h Wᵀ + b) (bernoulli visible) or h Wᵀ + b (gaussian), u ~ U(0, 1); "
    "ΔW ← alpha ΔW + eps ((v⁰ᵀ p⁰ - vᵏᵀ pᵏ) / N - lambda W), "
    "Δb ← alpha Δb + eps mean_n(v⁰ - vᵏ), Δc ← alpha Δc + eps mean_n(p⁰ - pᵏ); "
    "W += ΔW, b += Δb, c += Δc; Δ = 0 and, before the first epoch, b = log(p̄ / (1 - p̄)) with "
    "p̄ the inputs' mean clipped to [0.001, 0.999] (bernoulli, §8.1) or b = the inputs' mean "
    "(gaussian)",
)
