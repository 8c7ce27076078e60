"""Speed and memory of invrob's hot paths, measured side by side (``make bench``).

``python -m benchmarks`` runs, on real MNIST and on the same model, batch and
budget for both sides of every comparison:

1. PGD ℓ∞ (invrob) vs ``torchattacks.PGD`` — :mod:`benchmarks.pgd`;
2. PGD's overhead over the model's own forward+backward — :mod:`benchmarks.pgd`;
3. rotated accuracy over a θ grid, batched vs a per-image torchvision loop —
   :mod:`benchmarks.rotation`;
4. robust accuracy over an ε grid in one call vs one PGD run per ε — :mod:`benchmarks.grid`;
5. minimal perturbation (boundary distance): time and model passes — :mod:`benchmarks.grid`;
6. the peak memory of each side, in every row.

It prints one markdown table and writes it atomically to ``benchmarks/results.md``
(``--quick``: small sizes, written under ``benchmarks/.cache/`` unless ``--out``).
Each row also checks that the two sides agree; the exit status is 1 when any
agreement check fails. Speed goals are reported, never asserted.
"""
