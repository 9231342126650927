"""The command line and what it measures: `python -m rain ...` (cli), bench, throughput, distributed (Ray),
evaluation with its judges, summary and figure, sweep, model_check and judge_check. The top floor: it may import
every floor below, and nothing imports it."""
