"""Independent assessment: estimators over a rack's recorded telemetry (pure numpy, streamed in chunks).

`series` turns batches into aligned `RackChunk`s; each estimator is an accumulator with
`update(chunk)` and `result()`, and every result says `insufficient` (why) instead of guessing.
"""
