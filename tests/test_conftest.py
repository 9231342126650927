"""The shared fixtures leave no state behind for the next test (pytest runs a module's tests in file order)."""
from __future__ import annotations

import torch

from conftest import DEFAULT_THREADS


def test_a_test_that_leaves_one_torch_thread_behind():
    torch.set_num_threads(1)                 # what the session-wide app fixture does while it serves


def test_the_next_test_starts_at_the_session_thread_count():
    assert torch.get_num_threads() == DEFAULT_THREADS


def test_one_torch_thread_is_kept_for_the_tests_that_ask_for_it(one_torch_thread):
    assert torch.get_num_threads() == 1


def test_a_port_taken_between_probe_and_launch_means_another_port(monkeypatch):
    """free_port binds, closes, and the server binds again later: someone may take the port in between."""
    import socket

    import gradio as gr

    import conftest

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = [taken.getsockname()[1]]
    real_free_port = conftest.free_port
    monkeypatch.setattr(conftest, "free_port", lambda: ports.pop(0) if ports else real_free_port())
    with gr.Blocks() as demo:
        gr.Markdown("ok")
    try:
        port = conftest.launch_on_a_free_port(demo)
        assert port != taken.getsockname()[1] and not ports
    finally:
        demo.close()
        taken.close()
