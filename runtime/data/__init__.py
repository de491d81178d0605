"""The data layer, one stage per module, data flowing one way: source → split → fitted
statistics → transforms → batches (runtime/data/batches.py: in memory on the device, or
streamed batch by batch through Grain)."""
