"""The data layer as stages a sample flows through, one module each, top to bottom:
source → split → fitted statistics → transforms → batches. `runtime/pipeline.py`'s `prepare`
calls them in this order, in memory and streamed alike.

Follow one example from a file to the device:

0. `table` — what every stage shares: `Table`, examples in memory (`x`, `y`, the task and
   classes, and where each row came from, for messages), `Block` (where each output's targets
   sit when a model has several), and `_Where`, through which every reader's errors point at
   the spec field or into the file.
1. source — `load` decides, from `data.stream`, whether the data streams (`stream_sources`:
   `true`, or `auto` where the examples would not fit the memory free for the run). Either way
   a source word is read through `sources`, the table of words: one module per word holds
   its reader for both modes — `builtin` (read whole only), `arrays` (`npz`, `npy`),
   `csvrows` (`csv`), `images`, `parquet`, `shards` — and `outputs` reads a source for a
   model with several outputs. Read in memory (`load_tables`), a word gives one `Table`
   (`sources.load_source`); a CSV with a string or missing input cell, or typed `columns`,
   keeps its input cells as strings (a typed table). Streamed, it opens as `Examples`:
   random access to one data set's examples, Grain's `RandomAccessDataSource` protocol.
   `examples[i]` reads row `i` from the file (a memory-mapped array row, a CSV line found by
   its byte offset in a cached index, an image decoded and resized, a Parquet row group, an
   ArrayRecord record) and gives `(x, y)`, the row the in-memory reader gives: `x` float32
   (int32 for token ids) of the source's raw shape, `y` a class index or real values. A bad
   example raises a `SpecError` naming the file and its row or offset, or, under
   `data.on_error = skip`, comes back as a `Skipped` record. Nothing is read when a source
   opens beyond what its shape and classes need, and an `Examples` pickles small, so Grain's
   worker processes open the files again. Under `data.cache = true`, `cache.py` keeps what an
   image folder or a CSV decodes in memory maps every reading process shares, so each
   example is decoded once.
2. `split` — `data.split` cuts the row numbers `0..N-1` by a seeded permutation: `split_table`
   for tables in memory, `split_rows` for streamed sources (the same permutation), and the
   separate `val` / `test` sources that take a share's place. Under `data.on_error = skip`
   a table read whole was read by its streamed reader and N counts its skipped rows too;
   `skipping` then serves it to the streamed stages from memory (`KeptExamples`), so it
   trains on the streamed run's batches.
3. `fitted` — the normalizer's statistics (`data.normalize`) and the regression targets'
   (`data.targets`) from the train split only, in chunks of 4096 rows, float64 accumulators
   merged by Chan et al.'s parallel update: `fit` on a split in memory, `fit_rows` in one pass
   over a streamed source's train rows, so both modes give the same statistics, bit for bit.
   A typed table's (`fit_table`): its columns' types and vocabularies (runtime/tabular.py's
   `Schema`), then the statistics over its number columns.
4. `transforms` — `transform`: `preprocess.apply` with those statistics, the targets scaled,
   the examples reshaped to the model's input (`to_model`), and `check_examples`: ids within
   their tables, multi-hot rows only for a multi-label task; on a whole split in memory, or on
   each streamed batch as it is read. A typed table's (`transform_table`): its cells encoded
   with the schema (`tabular.encode`), then the same targets, checks and reshape.
5. `batches` — in memory, the trainer places the splits on the device (runtime/train.py);
   streamed, `Streamed` reads a split batch by batch through Grain (shuffled, prefetched,
   checkpointed in mid-epoch), fed to the train step.
"""
