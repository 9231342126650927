"""Runs: one prompt as one stream, and what is built from its record.

session (vanilla, RAIN and Best-of-N as one typed stream), best_of_n, runtimes (a runtime by its spec; imports
the backend lazily), concurrent (many prompts at once), fork, teaching (divergence, narration, the why-table) and
treelog. Imports rain.core; rain.backends only through `runtimes.load_runtime`, when a runtime is asked for.
"""
