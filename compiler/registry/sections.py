"""The `data`, `train` and `sweep` sections: their fields are arguments of a section entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..diagnostics import E_UNFREEZE_WHEN, Span
from ..values import RecordVal
from .core import Args, Problem, arg, registry
from .types import (
    Bool,
    Duration,
    EnumT,
    Int,
    ListT,
    MapT,
    Mismatch,
    NonNegFloat,
    NonNegInt,
    OptionalT,
    PosFloat,
    PosInt,
    Prob,
    QuantityT,
    RecordT,
    RefT,
    Str,
    UnionT,
)

SECTIONS = registry(
    "section",
    "sections",
    "Top-level sections; each field is written `name = value`, one per line.",
)

from .metrics import MONITORS  # noqa: E402  (one list of monitorable names)

SPLIT = RecordT(
    (
        arg("train", Prob, 0.8),
        arg("val", Prob, 0.1),
        arg("test", Prob, 0.1),
    ),
    "split",
    rest=0.0,  # `{ train: 0.8, test: 0.2 }` has no val share (a separate val file, say)
)

EARLY_STOPPING = RecordT(
    (
        arg("monitor", EnumT(MONITORS), "val_loss"),
        arg("patience", PosInt, 5, "epochs without improvement before stopping"),
        arg("min_delta", NonNegFloat, 0.0, "smallest change that counts as improvement"),
        arg("mode", EnumT(("auto", "min", "max")), "auto", "auto: max for accuracy-like metrics"),
        arg("restore_best", Bool, True, "end with the weights of the best epoch"),
    ),
    "early_stopping",
)


HEALTH = RecordT(
    (
        arg(
            "every",
            Duration,
            doc="steps (or epochs) between two checks of the layers' statistics",
        ),
    ),
    "health",
)


@dataclass(frozen=True)
class WrittenDuration(QuantityT):
    """A duration whose unit is written out: elsewhere a bare int counts steps, which an
    epoch count (`after: 5`) is too easily taken for."""

    label = "a duration with its unit (`5 epochs`, `300 steps`)"

    def convert(self, v: Any, span: Span) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            raise Mismatch(self.label, E_UNFREEZE_WHEN, f"write `{v} epochs` (or `{v} steps`)")
        return super().convert(v, span)


UNFREEZE = RecordT(
    (
        arg(
            "after",
            WrittenDuration(),
            doc="when the layers `freeze` holds start to train: `5 epochs` (the first 5 epochs "
            "train the other layers only) or `300 steps` (optimizer updates, as schedules count)",
        ),
        arg(
            "lr_factor",
            PosFloat,
            1.0,
            "multiplies every layer's learning rate from then on (the recipe's lower rate for "
            "the whole network, e.g. 0.1); it multiplies the updates, as `lr_scale` does",
        ),
    ),
    "unfreeze",
)


def _check_split(a: Args) -> None:
    total = sum(v for _, v in a.split.items)
    if abs(total - 1.0) > 1e-9:
        raise Problem(
            f"split fractions add up to {total:g}, not 1",
            "make `train + val + test` equal 1",
            "split",
        )


SECTIONS.add(
    "data",
    args=(
        arg("source", RefT("dataset"), doc="where examples come from"),
        arg(
            "split",
            SPLIT,
            RecordVal((), ()),
            "fractions of the source (0.8 / 0.1 / 0.1); keys a written split leaves out are 0",
        ),
        arg("normalize", RefT("normalizer"), "none", "statistics from the train split only"),
        arg(
            "targets",
            RefT("normalizer"),
            "none",
            "scale regression targets (an `invertible` normalizer, per output unit, fitted on "
            "the train split); the model learns the scaled targets, the reported `loss` is in "
            "scaled units, metrics and `dnn predict` are in the data's units. Not the default: "
            "it would change the meaning of the loss (and of `huber`'s delta) and break an "
            "output bounded to the data's range (a sigmoid for targets in [0, 1])",
        ),
        arg("augment", ListT(RefT("augmentation")), (), "random transforms applied in training"),
        arg(
            "reconstruct",
            Bool,
            False,
            "the targets are the inputs (an autoencoder): the model learns each example's "
            "input as `normalize` scales it, before `augment` (so a `noise` augmentation makes "
            "a denoising autoencoder); metrics and `dnn predict` give it back in the data's "
            "units, and the source's labels are not learned. Needs one input, one output with "
            "as many values, a regression loss and an invertible `normalize`",
        ),
        arg("shuffle", Bool, True, "reshuffle the train split every epoch"),
        arg(
            "stream",
            UnionT((EnumT(("auto",)), Bool)),
            "auto",
            "true: read the splits from their files batch by batch as training goes (Grain), "
            "on the same batches in the same order as in memory; false: read them whole and "
            "keep them on the device; auto: stream where the examples, decoded, would take "
            "more than half the memory free for the run (docs/data.md)",
        ),
        arg(
            "workers",
            UnionT((EnumT(("auto",)), NonNegInt)),
            "auto",
            "processes that read and decode a streamed split's examples (Grain's worker "
            "processes), besides the reading threads; 0: threads only; auto: 0 for arrays "
            "and tables, up to 4 (one core left to training) for image files",
        ),
        arg(
            "cache",
            Bool,
            False,
            "keep a streamed source's decoded examples on disk (an image folder's pixels, a "
            "CSV's numbers), so each is decoded once, not every epoch, and the next run over "
            "the same files decodes none: in `.dnn-cache/` beside the source, else "
            "~/.cache/dnn/data; a changed file starts a new cache. npz, npy, parquet and "
            "shards read fast already, and built-in sets are generated in memory: those are "
            "not cached",
        ),
        arg("drop_last", Bool, False, "drop a last batch smaller than batch_size"),
        arg(
            "val",
            OptionalT(RefT("dataset")),
            None,
            "a separate validation source (the split then divides `source` into train and test)",
        ),
        arg(
            "test",
            OptionalT(RefT("dataset")),
            None,
            "a separate test source (the split then divides `source` into train and val)",
        ),
        arg("seed", Int, 0, "seed of the split; `train.seed` drives init, batches and dropout"),
        arg(
            "columns",
            MapT(RefT("column")),
            (),
            "a CSV source's column types by name (`{ island: category, notes: text }`); the "
            "columns left out get a type inferred from the train split (docs/data.md)",
        ),
        arg(
            "on_error",
            EnumT(("fail", "skip")),
            "fail",
            "a bad example (a short row, a corrupt image, a label outside the classes, an "
            "array row holding NaN), streamed or read whole: `fail` stops with its file and "
            "row or offset; `skip` leaves it out, counts it and lists it in the run folder "
            "(`skipped.json`)",
        ),
    ),
    validate=_check_split,
    doc="the data a model trains and is evaluated on",
    formula="train / val / test = split of source; x <- normalize(x), y <- targets(y), each "
    "fitted on train (`reconstruct = true`: y <- normalize(x)); metrics and predictions read "
    "targets^-1(model(x))",
)

SECTIONS.add(
    "train",
    args=(
        arg(
            "loss",
            UnionT((RefT("loss"), MapT(RefT("loss")))),
            "cross_entropy",
            "one loss for every output, or one per output by name (`{ digit: cross_entropy, "
            "size: mse }`); reported in the units of the targets the model learns: scaled ones "
            "under `data.targets` (metrics stay in the data's units)",
        ),
        arg(
            "loss_weights",
            MapT(NonNegFloat),
            (),
            "weights of the outputs' losses in the total, by output name (default 1 each)",
        ),
        arg("metrics", ListT(RefT("metric")), ("accuracy",)),
        arg("batch_size", PosInt, 32),
        arg("epochs", PosInt, 10),
        arg("optimizer", RefT("optimizer"), "adam"),
        arg("schedule", RefT("schedule"), "constant"),
        arg("clip", OptionalT(RefT("clipper")), None, "gradient clipping"),
        arg(
            "init",
            OptionalT(RefT("initializer")),
            None,
            "kernel initializer for layers that write no `init`",
        ),
        arg(
            "regularizer",
            OptionalT(RefT("regularizer")),
            None,
            "model-wide penalty for layers that set none",
        ),
        arg("early_stopping", OptionalT(EARLY_STOPPING), None),
        arg(
            "health",
            OptionalT(HEALTH),
            None,
            "per-layer statistics every k steps (gradient norm, update / weight ratio, output "
            "mean and std, dead and saturated units) to health.jsonl and heatmaps, with the "
            "lectures' diagnoses at the spec lines (`dnn train --health`: every 50 steps)",
        ),
        arg("seed", Int, 0),
        arg("accumulate", PosInt, 1, "gradient accumulation over k micro-batches"),
        arg(
            "lr_scale",
            MapT(PosFloat),
            (),
            "learning-rate multipliers by layer name or glob pattern (first match wins)",
        ),
        arg("decay_all", Bool, False, "apply weight decay to biases and normalization scales too"),
        arg(
            "freeze",
            ListT(Str),
            (),
            "layer names or glob patterns whose weights stay fixed; a frozen batchnorm runs "
            "in inference mode (its running averages normalize and are not updated, as Keras's "
            "`trainable = False`)",
        ),
        arg(
            "unfreeze",
            OptionalT(UNFREEZE),
            None,
            "two-phase fine-tuning: the layers `freeze` holds train from `after` on, every layer "
            "then at `lr_factor` times the rate (`{ after: 5 epochs, lr_factor: 0.1 }`); their "
            "optimizer moments start at zero then, their batchnorms switch to training mode",
        ),
        arg(
            "pretrain",
            OptionalT(RefT("pretrainer")),
            None,
            "unsupervised layer-wise pretraining of the `pretrainable` layers (`rbm`) before "
            "step 0 of a fresh run, e.g. `cd(k = 1, epochs = 10, lr = 0.1)`; then the train "
            "section fine-tunes the whole network",
        ),
        arg(
            "init_from",
            OptionalT(Str),
            None,
            "a run directory whose weights initialize the layers of the same name and shape, "
            "or a PyTorch `.safetensors` file (torchvision, timm, Hugging Face): its modules "
            "fill the layers by `init_map`, then by name, then in network order by kind and "
            "shape; every layer filled and every tensor used unless `init_skip` says "
            "(`dnn weights FILE SPEC` shows the mapping; docs/transfer.md)",
        ),
        arg(
            "init_map",
            MapT(Str),
            (),
            'a weight file\'s module -> the layer it fills, e.g. `{ "features.0": "stem" }`; '
            'a pattern pair `{ "backbone.*": "encoder/*" }` matches those modules to those '
            "layers in order",
        ),
        arg(
            "init_skip",
            ListT(Str),
            (),
            "glob patterns of a weight file's tensors to leave unused and of layers to start "
            'fresh (a new head: `["fc.*", "head"]`)',
        ),
        arg(
            "loop",
            EnumT(("auto", "scan", "steps")),
            "auto",
            "scan: a whole epoch as one XLA program (lax.scan over batches); steps: one jitted "
            "call per batch; auto: scan unless convolutions run on a CPU (slower in a loop body)",
        ),
        arg(
            "scan_repeats",
            UnionT((EnumT(("auto",)), Bool)),
            "auto",
            "true: lower each run of identical consecutive block instances (`repeat N { b }`) "
            "as one scanned body with weights stacked under `first..last`, cut where `freeze` "
            "treats instances differently; it trains as the unrolled run does; false: unroll; "
            "auto: scan runs of 8 or more, except convolution/pooling/recurrent bodies on a "
            "CPU. Measured on a CPU: compile of "
            "repeat 64 is 1.4x repeat 4's scanned, 13x unrolled (dense block); scanned steps "
            "are 1.2x slower at N = 4, equal at 8, 0.6x at 64; a conv block's are 2.6-10x "
            "slower in the loop (docs/performance.md)",
        ),
        arg(
            "remat",
            Bool,
            False,
            "recompute each scanned repeat's activations in the backward pass instead of "
            "storing them: less memory (conv block, N = 64: 163 -> 29 MB), more compute",
        ),
        arg(
            "precision",
            EnumT(("f32", "bf16")),
            "f32",
            "bf16: compute the forward and backward passes in bfloat16; parameters, optimizer "
            "state, loss and metrics stay float32 (bf16 keeps f32's exponent range: no loss "
            "scaling)",
        ),
        arg(
            "devices",
            UnionT((EnumT(("all",)), PosInt)),
            1,
            "how many devices one run uses (`all`: every local device, or every device of a "
            "multi-host run)",
        ),
        arg(
            "shard",
            EnumT(("data", "fsdp")),
            "data",
            "data: split each batch, replicate the weights; fsdp: split the weights and "
            "optimizer state too",
        ),
        arg(
            "ensemble",
            PosInt,
            1,
            "train N members with seeds seed .. seed + N - 1 in one program; report each "
            "member and the ensemble (mean of the members' probabilities)",
        ),
    ),
    doc="how the model is trained",
    formula="minimize loss(model(x), y) + penalties with optimizer, schedule and clipping",
)

SECTIONS.add(
    "sweep",
    args=(
        arg("method", RefT("search"), "random"),
        arg("objective", RefT("objective"), "minimize"),
        arg("pruner", RefT("pruner"), "none"),
    ),
    doc="hyperparameter search; other fields map a param or `section.field.arg` path to a "
    "distribution, e.g. `train.optimizer.lr = loguniform(1e-4, 1e-2)`",
    formula="best = argmin/argmax over trials of objective(train(spec with sampled values))",
)
