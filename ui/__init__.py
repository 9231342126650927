"""The RAIN Explorer web app. The page (layout.py) wires the handlers: the run (run.py: one rain.runs.session stream,
its request parsed by request.py from the knobs of knobs.py), recordings and files (files.py), the models it may
load (runtimes.py); every handler shows a run through outputs.py. Pure figures (figures.py), HTML
renderings (render.py, bon.py), the event fold (view.py), the paper-budget estimate (estimate.py)."""
