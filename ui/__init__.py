"""The RAIN Explorer web app: pure figures (figures.py), HTML renderings (render.py), the event fold (view.py),
Gradio handlers (handlers.py) and the page (layout.py). It consumes the search's events only."""
