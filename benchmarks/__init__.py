"""Scripts that reproduce the benchmark tables of benchmarks/README.md, run from the repository root
as modules: ``python -m benchmarks.<name>`` (``make bench`` runs the quick ones). A package, so
that a script imports its siblings as ``benchmarks.<name>`` and the repository's ``predictors``
package is never shadowed by ``benchmarks/predictors.py``."""
