"""Data: where examples come from (`data { source = ... }`), how inputs are normalized
(`normalize = ...`), how regression targets are scaled (`targets = ...`) and how training inputs
are augmented (`augment = [...]`).

Built-in data sets come only from what installed packages ship or from small generators of
our own: nothing is downloaded at run time. `BUILTIN_DATA` describes each one (input shape
without the batch axis, number of classes or `None` for regression, size and origin) so the
checker can match a model's input and output to the data without loading it.

Normalization statistics (mean, standard deviation, min/max, principal components) come from
the train split only and are stored with the checkpoint. Augmentations apply to training
batches only, with fresh randomness per example and step.
"""

from __future__ import annotations

import math
from typing import Any

from .core import Args, Needs, Problem, arg, registry
from .types import EnumT, FloatT, ListT, NonNegFloat, NonNegInt, OptionalT, PosFloat, PosInt, Str

# ----------------------------------------------------------------------------- data sets

BUILTIN_DATA: dict[str, dict[str, Any]] = {
    "digits": {
        "shape": (64,),
        "classes": 10,
        "samples": 1797,
        "task": "classification",
        "source": "sklearn.datasets.load_digits",
        "range": (0.0, 16.0),
        "doc": "8x8 images of handwritten digits, flattened, pixel values 0..16",
    },
    "iris": {
        "shape": (4,),
        "classes": 3,
        "samples": 150,
        "task": "classification",
        "source": "sklearn.datasets.load_iris",
        "doc": "sepal and petal measurements of three iris species",
    },
    "wine": {
        "shape": (13,),
        "classes": 3,
        "samples": 178,
        "task": "classification",
        "source": "sklearn.datasets.load_wine",
        "doc": "chemical analysis of wines from three cultivars",
    },
    "breast_cancer": {
        "shape": (30,),
        "classes": 2,
        "samples": 569,
        "task": "classification",
        "source": "sklearn.datasets.load_breast_cancer",
        "doc": "features of cell nuclei, malignant or benign",
    },
    "diabetes": {
        "shape": (10,),
        "classes": None,
        "samples": 442,
        "task": "regression",
        "source": "sklearn.datasets.load_diabetes",
        "doc": "ten baseline variables; target: disease progression after one year",
    },
    "moons": {
        "shape": (2,),
        "classes": 2,
        "samples": 1000,
        "task": "classification",
        "source": "sklearn.datasets.make_moons",
        "doc": "two interleaving half circles with noise (synthetic)",
    },
    "circles": {
        "shape": (2,),
        "classes": 2,
        "samples": 1000,
        "task": "classification",
        "source": "sklearn.datasets.make_circles",
        "doc": "a small circle inside a large one, with noise (synthetic)",
    },
    "spirals": {
        "shape": (2,),
        "classes": 3,
        "samples": 1000,
        "task": "classification",
        "source": "synthetic",
        "doc": "three interleaved spiral arms in the plane (synthetic)",
    },
    "xor": {
        "shape": (2,),
        "classes": 2,
        "samples": 1000,
        "task": "classification",
        "source": "synthetic",
        "doc": "points in [-1, 1]^2, class 1 where the coordinates' signs differ (synthetic)",
    },
    "sequence": {
        "shape": (20, 1),
        "classes": 2,
        "samples": 1000,
        "task": "classification",
        "source": "synthetic",
        "doc": "noisy sequences of 20 steps, one feature; class 1 where the sum is positive "
        "(synthetic, for recurrent and 1-d convolutional models)",
    },
    "digits_multi": {
        "shape": (64,),
        "classes": 10,
        "samples": 1797,
        "task": "classification",
        "range": (0.0, 16.0),
        "targets": (("digit", 10), ("odd", 2)),
        "source": "sklearn.datasets.load_digits",
        "doc": "the digits with two targets, for a model with two outputs: `digit` (the class, "
        "0..9) and `odd` (1 for odd digits); a model with one output reads `digit`",
    },
    "tokens": {
        "shape": (13,),
        "classes": 2,
        "samples": 1000,
        "task": "classification",
        "dtype": "int",
        "vocab": 20,
        "source": "synthetic",
        "doc": "sequences of 13 token ids in 0..19; class 1 where most ids are below 10 "
        "(synthetic, for `input t: i32[13]` and `embedding(20, dim)`)",
    },
}

DATASETS = registry(
    "dataset",
    "datasets",
    "Where the examples come from: a built-in set, a CSV, NPZ, NPY or Parquet file, a folder "
    "of images, or ArrayRecord shards.",
    implemented_in="dnn.runtime.data.sources",
)


def _check_images(a: Args) -> None:
    if a.size is not None and len(a.size) != 2:
        raise Problem(
            f"`size` needs 2 items, [height, width], got {len(a.size)}",
            hint="write `size = [32, 32]`",
            arg="size",
        )


DATASETS.add(
    "builtin",
    example='builtin("iris")',
    args=(arg("name", EnumT(tuple(BUILTIN_DATA)), doc="which built-in data set"),),
    doc="a small data set shipped with an installed package or generated on the spot",
    formula="(x, y) = the named set; shapes, classes and sizes as listed in BUILTIN_DATA",
    info={"sets": BUILTIN_DATA},
)

DATASETS.add(
    "csv",
    needs=Needs(file="path", outputs="label"),
    example='csv("data.csv")',
    args=(
        arg("path", Str, doc="file path, relative to the spec file"),
        arg("label", Str, "label", doc="name of the target column"),
    ),
    doc="a CSV file with a header row: the label column is the target, the others the inputs; "
    "a model with several outputs reads output `a`'s targets from column `a` (or `a_0` ... "
    "`a_<D-1>` for D values or multi-hot rows) and leaves `label` out",
    formula="y = column `label` (several outputs: y_a = column a, or columns a_0 ... a_<D-1>); "
    "x = every other column, as float32, in file order",
)

DATASETS.add(
    "npz",
    needs=Needs(file="path", outputs="y"),
    example='npz("data.npz")',
    args=(
        arg("path", Str, doc="file path, relative to the spec file"),
        arg("x", Str, "x", doc="name of the input array"),
        arg("y", Str, "y", doc="name of the target array"),
    ),
    doc="a NumPy .npz archive holding an input array and a target array; a model with several "
    "outputs reads output `a`'s targets from array `a` and leaves `y` out",
    formula="x = archive[x], y = archive[y] (several outputs: y_a = archive[a]); the first axis "
    "indexes the examples",
)

DATASETS.add(
    "images",
    needs=Needs(file="dir"),
    example='images("images")',
    args=(
        arg("dir", Str, doc="folder with one subfolder of images per class"),
        arg("size", OptionalT(ListT(PosInt)), None, doc="[height, width] to resize to"),
    ),
    doc="a folder of images, one subfolder per class (class names in sorted order)",
    formula="x = image pixels scaled to [0, 1], shape [height, width, channels]; "
    "y = index of the subfolder in sorted order",
    validate=_check_images,
    traits=frozenset({"unit_range"}),
)

DATASETS.add(
    "npy",
    needs=Needs(file="x"),
    example='npy(x = "x.npy", y = "y.npy")',
    args=(
        arg("x", Str, doc="the inputs' .npy file, relative to the spec file"),
        arg("y", Str, doc="the targets' .npy file, relative to the spec file"),
    ),
    doc="two NumPy .npy files, inputs and targets, memory-mapped (never loaded whole when the "
    "data streams); targets as `npz` reads them",
    formula="x = load(x)[i], y = load(y)[i]; the first axis indexes the examples",
)

DATASETS.add(
    "parquet",
    needs=Needs(file="path"),
    example='parquet("data.parquet")',
    args=(
        arg("path", Str, doc="file path, relative to the spec file"),
        arg("label", Str, "label", doc="name of the target column"),
    ),
    doc="a Parquet file (pyarrow): the label column is the target (numbers, or names as "
    "classes), every other column a numeric input; read a row group at a time",
    formula="y = column `label`; x = every other column, as float32, in file order",
)

DATASETS.add(
    "shards",
    example='shards("shards/*.array_record")',
    args=(
        arg(
            "pattern",
            Str,
            doc="glob of ArrayRecord files, relative to the spec file; `dnn-shards.json` beside "
            "them describes the set (written by `dnn data SPEC --write-shards DIR`)",
        ),
    ),
    doc="ArrayRecord shards read through Grain, each record an uncompressed NPZ of `x` and `y` "
    "(no pickle): a set of any size, written once from any other source",
    formula="x, y = the arrays of record i, records in the order of the sorted file names",
)

# ----------------------------------------------------------------------------- table columns

COLUMNS = registry(
    "column",
    "columns",
    "Types of a CSV table's columns (`data { columns = { island: category } }`): how a "
    "column's cells become what the model reads. A column the spec does not type gets one "
    "inferred from the train split; the vocabularies and fill values are fitted on the train "
    "split and saved with the run (docs/data.md). Missing cells are empty or one of pandas' "
    "missing markers (`NA`, `N/A`, `NaN`, `null`, `None`, ...).",
    implemented_in="dnn.runtime.tabular",
)

COLUMNS.add(
    "number",
    doc="a real value, scaled by `normalize`; a missing cell takes the train split's mean, and "
    "where the train split has missing cells a 0/1 is-missing feature follows the value",
    formula="x = normalize(v), v = the cell, or mean_train where it is missing;  "
    "m = 1 where the cell is missing, else 0 (only if the train split has a missing cell)",
)

COLUMNS.add(
    "category",
    aliases=("categorical",),
    doc="one of a set of values (strings or numbers): an index into the train split's "
    "vocabulary, with a bucket for values train never saw (counted by `dnn predict`) and one "
    "for missing cells; an integer input reads the index (for `embedding`), a real input its "
    "one-hot vector",
    formula="i = 0 for a value not in train (out of vocabulary), 1 for a missing cell, "
    "2 + r for the train value of rank r (most frequent first, ties in sorted order);  "
    "K = 2 + distinct train values;  one-hot: x_j = [j == i], j < K",
)

COLUMNS.add(
    "binary",
    aliases=("boolean",),
    doc="two values: 1 for the positive one, 0 for the other; a missing cell is 0, and where "
    "the train split has missing cells a 0/1 is-missing feature follows",
    formula="x = [v == positive], positive = the value among true/yes/y/t/1/on (any case), "
    "else the second of the two train values in sorted order;  m = [v missing]",
)

COLUMNS.add(
    "text",
    example="text(length = 16)",
    args=(
        arg("length", PosInt, 16, doc="word ids per cell: longer cells are cut, shorter padded"),
        arg(
            "max_words",
            OptionalT(PosInt),
            None,
            doc="vocabulary size cap (the most frequent train words); none: every train word",
        ),
    ),
    doc="free text: lower-cased words (runs of letters and digits), each an id in the train "
    "split's vocabulary, padded with 0 to `length`; it feeds an integer input of its own name, "
    "`input notes: i32[16]`, and `padding_mask(0)(notes)` is its mask",
    formula="words = findall(r'\\w+', lower(v));  id = 0 padding, 1 out of vocabulary, "
    "2 + r for the train word of rank r (most frequent first, ties in sorted order);  "
    "ids = (id(w_1), ..., id(w_length)), padded with 0",
)

COLUMNS.add(
    "ignore",
    aliases=("skip",),
    doc="a column the model does not read (an identifier, a free comment)",
    formula="no feature",
)

# ----------------------------------------------------------------------------- normalization

NORMALIZERS = registry(
    "normalizer",
    "normalizers",
    "Transforms of the inputs (`normalize`) or of regression targets (`targets`, the "
    "`invertible` ones) fitted on the train split (mu, sigma, min, max and the covariance's "
    "eigenvectors U and eigenvalues S are per feature and from the train split).",
    implemented_in="dnn.runtime.preprocess",
)


def _components(a: Args, x: tuple[int, ...]) -> tuple[int, ...]:
    """PCA's output: n components of the flattened example, n at most its feature count."""
    features = math.prod(x)
    n = features if a.n is None else a.n
    if n > features:
        raise Problem(
            f"`n = {n}` components, but the examples have {features} features",
            hint=f"keep at most {features}: `n = {features}`",
            arg="n",
        )
    return (n,)


_INVERTIBLE = frozenset({"invertible"})  # may normalize regression targets too

_WHITEN_EPS = arg("eps", PosFloat, 1e-5, doc="added to the eigenvalues before the square root")

NORMALIZERS.add(
    "none",
    doc="inputs as they are",
    formula="x' = x",
    traits=_INVERTIBLE,
    info={"fit": False},
)

NORMALIZERS.add(
    "standardize",
    aliases=("zscore", "standard"),
    doc="zero mean and unit variance per feature",
    formula="x' = (x - mu) / sigma   (sigma = 1 where a feature is constant)",
    traits=_INVERTIBLE,
    info={"fit": True},
)

NORMALIZERS.add(
    "minmax",
    aliases=("min_max",),
    doc="rescale each feature to [0, 1] (the train split's; val and test may fall outside)",
    formula="x' = (x - min) / (max - min)   (max - min = 1 where a feature is constant)",
    traits=_INVERTIBLE | {"unit_range"},
    info={"fit": True},
)

NORMALIZERS.add(
    "scale",
    doc="rescale each feature to [-1, 1]",
    formula="x' = 2 (x - min) / (max - min) - 1   (max - min = 1 where a feature is constant)",
    traits=_INVERTIBLE,
    info={"fit": True},
)

NORMALIZERS.add(
    "mean_subtraction",
    aliases=("center",),
    doc="subtract the mean of each feature",
    formula="x' = x - mu",
    traits=_INVERTIBLE,
    info={"fit": True},
)

NORMALIZERS.add(
    "pca",
    example="pca(n = 2)",
    args=(arg("n", PosInt, doc="number of principal components kept"),),
    doc="project the centred inputs on the n leading principal components",
    formula="cov = X_c^T X_c / N,  U, S = svd(cov);  x' = (x - mu) U[:, :n]",
    shape=_components,
    info={"fit": True},
)

NORMALIZERS.add(
    "pca_whiten",
    args=(
        arg("n", OptionalT(PosInt), None, doc="components kept; none: all"),
        _WHITEN_EPS,
    ),
    aliases=("whiten",),
    doc="PCA whitening: decorrelate, then give every component unit variance",
    formula="x' = (x - mu) U[:, :n] / sqrt(S[:n] + eps)",
    shape=_components,
    info={"fit": True},
)

NORMALIZERS.add(
    "zca",
    args=(_WHITEN_EPS,),
    aliases=("zca_whiten",),
    doc="ZCA whitening: PCA whitening rotated back to the input axes",
    formula="x' = (x - mu) U diag(1 / sqrt(S + eps)) U^T",
    info={"fit": True},
)

# ----------------------------------------------------------------------------- augmentation

_IMAGE = Needs(input="image")

AUGMENTATIONS = registry(
    "augmentation",
    "augmentations",
    "Random transforms of training inputs; `needs.input` says whether an entry needs images "
    "([height, width, channels]) or takes any input.",
    implemented_in="dnn.runtime.augment",
)

AUGMENTATIONS.add(
    "random_crop",
    args=(arg("padding", NonNegInt, 4, doc="zero padding added on each side before cropping"),),
    aliases=("crop",),
    doc="pad the image with zeros, then crop a random window of the original size",
    formula="x' = pad(x, padding)[i : i + H, j : j + W],  i, j ~ U{0 .. 2 padding}",
    needs=_IMAGE,
)

AUGMENTATIONS.add(
    "random_flip",
    args=(
        arg(
            "direction",
            EnumT(("horizontal", "vertical")),
            "horizontal",
            doc="horizontal: mirror left-right; vertical: mirror top-bottom",
        ),
    ),
    aliases=("flip",),
    doc="mirror the image with probability 1/2",
    formula="x' = flip(x) with probability 0.5, else x",
    needs=_IMAGE,
)

AUGMENTATIONS.add(
    "rotate",
    args=(arg("max_degrees", FloatT(min=0.0, max=180.0), 15.0, doc="largest rotation angle"),),
    aliases=("random_rotation",),
    doc="rotate the image by a random angle about its centre (uncovered pixels are 0)",
    formula="x' = rotate(x, a),  a ~ U(-max_degrees, max_degrees) degrees, bilinear",
    needs=_IMAGE,
)

AUGMENTATIONS.add(
    "zoom",
    args=(
        arg(
            "max_factor",
            FloatT(min=0.0, max=1.0, max_open=True),
            0.1,
            doc="largest relative change of scale",
        ),
    ),
    aliases=("random_zoom",),
    doc="scale the image about its centre by a random factor, keeping its size",
    formula="x' = zoom(x, s),  s ~ U(1 - max_factor, 1 + max_factor), bilinear, cropped or "
    "zero-padded to H x W",
    needs=_IMAGE,
)

AUGMENTATIONS.add(
    "color_shift",
    args=(arg("max_delta", NonNegFloat, 0.1, doc="largest shift per channel"),),
    aliases=("brightness",),
    doc="add a random offset to each channel",
    formula="x'_c = x_c + d_c,  d_c ~ U(-max_delta, max_delta) per image and channel",
    needs=_IMAGE,
)

AUGMENTATIONS.add(
    "noise",
    args=(arg("std", NonNegFloat, 0.1, doc="standard deviation of the noise"),),
    aliases=("gaussian_noise",),
    doc="add Gaussian noise to every input element",
    formula="x' = x + e,  e ~ N(0, std^2) element-wise",
)

AUGMENTATIONS.add(
    "cutout",
    args=(arg("size", PosInt, 8, doc="side of the square set to zero"),),
    doc="set a randomly placed square of the image to zero (DeVries & Taylor 2017)",
    formula="x' = x with the size x size square centred at (i, j) set to 0, all channels;  "
    "(i, j) uniform over the image, the square clipped at the borders",
    needs=_IMAGE,
)

AUGMENTATIONS.add(
    "contrast",
    args=(
        arg(
            "max_factor",
            FloatT(min=0.0, max=1.0, max_open=True),
            0.2,
            doc="largest relative change of contrast",
        ),
    ),
    aliases=("random_contrast",),
    doc="scale each channel's deviation from its mean by a random factor",
    formula="x'_c = (x_c - mean(x_c)) * f + mean(x_c),  f ~ U(1 - max_factor, 1 + max_factor)",
    needs=_IMAGE,
)
