"""``nnmsf benchmark``: training-step, patch and volume inference time and peak memory of trainers on one plans.

Every trainer is built in-process the way ``nnUNetv2_train`` builds it (results go to a temporary folder, so
nothing of the user's is written) and measured in a fresh process of its own, so that peak memory, caches and
``torch.compile`` state of one trainer never leak into the next. Ratios are to the first trainer (the baseline).
Times do not depend on the weights, so ``--random-weights`` times the real-size encoders without checkpoints.
torch is imported inside the functions so that building ``nnmsf``'s parser (e.g. for ``nnmsf env``) stays fast.

Modules, by what they do: ``options`` (what one run measures), ``discovery`` (trainer classes by name, random-weight
variants), ``timing`` (the measurements, one trainer per process), ``formatting`` (ratios, machine, tables),
``command`` (argument checks, the run, the CLI).
"""
