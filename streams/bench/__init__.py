"""`bank bench`: end-to-end benchmarks of the pipeline on the real broker, with same-run baselines.

See bench/README.md for what each figure means.
"""
