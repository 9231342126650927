"""The algorithm and its data: the floor everything else stands on.

config (every knob), tree, events (what the search reports), replay (events -> tree), export (the tree file and
its schema), prompts, lm (the model protocols), decoding, judge (self-evaluation) and search (RAIN itself).
It imports nothing from the floors above (backends, runs, tools) and nothing of a model library but torch.
"""
