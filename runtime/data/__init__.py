"""The data layer as stages a sample flows through, one module each, top to bottom:
source → split → fitted statistics → transforms → batches.

Follow one example from a file to the device:

1. `sources` — a data source word (`npz`, `npy`, `csv`, `images`, `parquet`, `shards`) opens
   as `Examples`: random access to one data set's examples, Grain's `RandomAccessDataSource`
   protocol. `examples[i]` reads row `i` from the file (a memory-mapped array row, a CSV line
   found by its byte offset in a cached index, an image decoded and resized, a Parquet row
   group, an ArrayRecord record) and gives `(x, y)`: `x` float32 (int32 for token ids) of the
   source's raw shape, `y` a class index or real values. A bad example raises a `SpecError`
   naming the file and its row or offset, or, under `data.on_error = skip`, comes back as a
   `Skipped` record. Nothing is read when a source opens beyond what its shape and classes
   need, and an `Examples` pickles small, so Grain's worker processes open the files again.
2. split — `data.split` cuts the row numbers `0..N-1` by a seeded permutation
   (`runtime/data/split.py`: `split` for tables in memory, `split_rows` for streamed sources).
3. `fitted` — the normalizer's statistics (`data.normalize`) and the regression targets'
   (`data.targets`) in one pass over the train split's rows, in chunks of 4096 rows, float64
   accumulators merged by Chan et al.'s parallel update. In-memory training computes them with
   the same code, so both modes give the same statistics, bit for bit.
4. transforms — `pipeline.transform`: `preprocess.apply` with those statistics, the model's
   input shape, the checks of ids and labels.
5. `batches` — in memory on the device, or streamed batch by batch through Grain (shuffled,
   prefetched, checkpointed in mid-epoch), fed to the train step.
"""
