"""Scorers: pure functions from predictions and gold records to numbers.

- `act.metrics.action`: accuracy / Macro F1 / clarify-class P/R/F1 of predicted vs gold actions.
- `act.metrics.task`:   the task heuristic that scores a final answer against a `Branch`
  (DROP/TAT-QA F1 for PACIFIC, CoQA token F1 for Abg-CoQA, SQL execution match for AmbigSQL).
- `act.metrics.checks`: the judge (action classifier) scored on the labelled check set.
- `act.metrics.paired`: a sweep's mean/std per method and ACT-minus-method paired differences.

metrics sit above `act.roles` (levels drives the roles, checks scores a classifier); roles never
import metrics (tests/test_layers.py).
"""
